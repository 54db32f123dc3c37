"""The currencies Stripe accepts (its "supported currencies" list): an unknown code is refused
with Stripe's 400, as Stripe does, instead of being stored and billed."""

from __future__ import annotations

from .errors import invalid

SUPPORTED = frozenset("""
usd aed afn all amd ang aoa ars aud awg azn bam bbd bdt bgn bhd bif bmd bnd bob brl bsd bwp byn bzd
cad cdf chf clp cny cop crc cve czk djf dkk dop dzd egp etb eur fjd fkp gbp gel gip gmd gnf gtq gyd
hkd hnl htg huf idr ils inr isk jmd jod jpy kes kgs khr kmf krw kwd kyd kzt lak lbp lkr lrd lsl mad
mdl mga mkd mmk mnt mop mur mvr mwk mxn myr mzn nad ngn nio nok npr nzd omr pab pen pgk php pkr pln
pyg qar ron rsd rub rwf sar sbd scr sek sgd shp sle sos srd std szl thb tjs tnd top try ttd twd tzs
uah ugx uyu uzs vnd vuv wst xaf xcd xof xpf yer zar zmw
""".split())


def check_currency(code: str, param: str = "currency") -> str:
    """The lower-cased code, or Stripe's "Invalid currency" 400."""
    lowered = str(code).lower()
    if lowered not in SUPPORTED:
        raise invalid(f"Invalid currency: {lowered}. Stripe currently supports these currencies: "
                      + ", ".join(sorted(SUPPORTED)), param=param)
    return lowered
