"""billing.toml -> frozen dataclasses. Every validation error names the file, the key path
and, where it can be found, the line: ``billing.toml:9: plans[1].features.api_calls:
track_usage needs price_per_credit``."""

from __future__ import annotations

import difflib
import re
import sys
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from .errors import ConfigError, NotFoundError, ValidationError
from .money import CURRENCIES
from .rules import MAX_AMOUNT, check_unit_price
from .suggest import did_you_mean

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

INTERVALS = ("week", "month", "year")
RENEWALS = ("reset", "add")
FEATURE_KEY = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


@dataclass(frozen=True)
class Allocation:
    """Units (credits) or minor units (wallet) granted each period."""

    allocation: int
    on_renewal: str = "reset"


@dataclass(frozen=True)
class AutoTopUp:
    """When the credit balance falls below ``threshold``, buy ``amount`` credits from the wallet."""

    threshold: int
    amount: int


@dataclass(frozen=True)
class PlanPrice:
    amount: int  # minor units per interval
    currency: str
    interval: str


@dataclass(frozen=True)
class Feature:
    key: str
    display_name: str
    price_per_credit: Decimal | None = None  # minor units per unit
    track_usage: bool = False
    credits: Allocation | None = None
    auto_top_up: AutoTopUp | None = None


@dataclass(frozen=True)
class Plan:
    name: str
    key: str  # slug of the name: stable id for lookups ("Pay As You Go" -> "pay_as_you_go")
    prices: tuple[PlanPrice, ...]
    features: dict[str, Feature] = field(hash=False, compare=True)
    wallet: Allocation | None = None

    def price_for(self, interval: str | None = None, currency: str | None = None) -> PlanPrice:
        """The plan's price for an interval (and currency); the only one when unambiguous."""
        found = [
            p
            for p in self.prices
            if (interval is None or p.interval == interval) and (currency is None or p.currency == currency)
        ]
        if not found:
            wanted = " ".join(x for x in (currency, interval) if x)
            have = ", ".join(f"{p.currency} {p.interval}" for p in self.prices)
            raise NotFoundError(f"plan {self.name!r} has no {wanted} price (it has: {have})")
        if len(found) > 1:
            have = ", ".join(f"{p.currency} {p.interval}" for p in found)
            raise NotFoundError(f"plan {self.name!r} has several prices ({have}): say which interval and currency")
        return found[0]


@dataclass(frozen=True)
class Config:
    path: Path
    plans: tuple[Plan, ...]
    ledger_path: Path | None = None
    ledger_url: str | None = None  # [ledger] url: a PostgreSQL ledger (never with path)

    def plan(self, name: str) -> Plan:
        """A plan by name or key, in any case: ``Pro``, ``pro`` and ``PRO`` are one plan."""
        wanted = name.casefold()
        for p in self.plans:
            if wanted in (p.name.casefold(), p.key):
                return p
        by_case = {p.name.casefold(): p.name for p in self.plans}
        close = difflib.get_close_matches(wanted, list(by_case), n=1)
        hint = f" (did you mean {by_case[close[0]]!r}?)" if close else ""
        raise NotFoundError(f"unknown plan {name!r}{hint} (plans: {', '.join(p.name for p in self.plans)})")

    def feature_keys(self) -> list[str]:
        """Every feature key, in config order, once."""
        seen: dict[str, None] = {}
        for p in self.plans:
            for k in p.features:
                seen.setdefault(k, None)
        return list(seen)


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


class _Checker:
    """Walks the parsed TOML, raising ConfigError with file, line and key path."""

    def __init__(self, path: Path, text: str):
        self.path = path
        self.lines = text.splitlines()

    def fail(self, keypath: str, message: str) -> ConfigError:
        line = self._locate(keypath)
        where = f"{self.path.name}:{line}" if line else self.path.name
        return ConfigError(f"{where}: {keypath}: {message}" if keypath else f"{where}: {message}")

    def _locate(self, keypath: str) -> int | None:
        """Best-effort line of a key path, for the error message (tomllib keeps no positions)."""
        parts = re.findall(r"[^.\[\]]+|\[\d+\]", keypath)
        start, end = 0, len(self.lines)
        line = None
        i = 0
        while i < len(parts):
            part = parts[i]
            nxt = parts[i + 1] if i + 1 < len(parts) else None
            if nxt and nxt.startswith("["):  # array of tables: find the n-th [[part]] header
                n = int(nxt[1:-1])
                headers = [
                    j for j in range(start, end) if re.match(rf"^\s*\[\[\s*{re.escape(part)}\s*\]\]", self.lines[j])
                ]
                if not headers:  # an inline array (prices = [...]): find its key instead
                    parts.pop(i + 1)
                    continue
                if n >= len(headers):
                    return line
                start = headers[n]
                end = headers[n + 1] if n + 1 < len(headers) else len(self.lines)
                line = start + 1
                i += 2
                continue
            pat = re.compile(rf"^\s*(\[[^\]]*\b{re.escape(part)}\s*\]|[\"']?{re.escape(part)}[\"']?\s*=|.*[{{,]\s*{re.escape(part)}\s*=)")
            for j in range(start, end):
                if pat.match(self.lines[j]):
                    line, start = j + 1, j
                    break
            i += 1
        return line

    def table(self, value: Any, keypath: str, allowed: dict[str, bool]) -> dict:
        """A table whose keys are all in ``allowed`` (name -> required)."""
        if not isinstance(value, dict):
            raise self.fail(keypath, f"must be a table, not {_kind(value)}")
        for key in value:
            if key not in allowed:
                raise self.fail(
                    _join(keypath, key), f"unknown key{did_you_mean(key, allowed)} (allowed: {', '.join(allowed)})"
                )
        for key, required in allowed.items():
            if required and key not in value:
                raise self.fail(keypath, f"missing required key {key!r}")
        return value

    def integer(self, value: Any, keypath: str, *, minimum: int = 0) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                raise self.fail(keypath, f"must be a whole number of minor units, write {int(value)} not {value}")
            raise self.fail(keypath, f"must be a whole number, not {_kind(value)} {value!r}")
        if value < minimum:
            raise self.fail(keypath, f"must be {minimum} or more, not {value}")
        if value > MAX_AMOUNT:
            raise self.fail(keypath, f"must be at most 2^53 ({MAX_AMOUNT:,}), not {value}")
        return value

    def string(self, value: Any, keypath: str) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(keypath, f"must be a non-empty string, not {_kind(value)} {value!r}")
        return value

    def choice(self, value: Any, keypath: str, options: tuple[str, ...]) -> str:
        if value not in options:
            hint = did_you_mean(str(value), options)
            raise self.fail(keypath, f"must be one of {', '.join(options)}, not {value!r}{hint}")
        return value

    def boolean(self, value: Any, keypath: str) -> bool:
        if not isinstance(value, bool):
            raise self.fail(keypath, f"must be true or false, not {value!r}")
        return value

    def unit_price(self, value: Any, keypath: str) -> Decimal:
        try:
            return check_unit_price(value)
        except ValidationError as e:
            raise self.fail(keypath, str(e)) from None

    def allocation(self, value: Any, keypath: str) -> Allocation:
        t = self.table(value, keypath, {"allocation": True, "on_renewal": False})
        return Allocation(
            allocation=self.integer(t["allocation"], _join(keypath, "allocation")),
            on_renewal=self.choice(t.get("on_renewal", "reset"), _join(keypath, "on_renewal"), RENEWALS),
        )


def _kind(value: Any) -> str:
    return {dict: "a table", list: "an array", str: "a string", bool: "a boolean", int: "an integer", float: "a float"}.get(
        type(value), type(value).__name__
    )


def _join(keypath: str, key: str) -> str:
    return f"{keypath}.{key}" if keypath else key


def load_config(path: str | Path) -> Config:
    """Read and validate billing.toml. Raises ConfigError naming file, line and key path."""
    path = Path(path)
    try:
        raw_bytes = _read_capped(path)
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: no such file (create one from billing.toml.example, or pass --config / USAGEBILL_CONFIG)"
        ) from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from None
    try:
        text = raw_bytes.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw_bytes[: e.start].count(b"\n") + 1
        raise ConfigError(f"{path.name}:{line}: not valid UTF-8") from None
    try:
        data = tomllib.loads(text)
    except RecursionError:
        raise ConfigError(f"{path.name}: TOML nested too deeply to be a billing.toml") from None
    except tomllib.TOMLDecodeError as e:
        # tomllib says "Invalid value (at line 3, column 9)"; lead with the position
        msg = str(e)
        m = re.search(r"\(at line (\d+), column (\d+)\)", msg)
        if m:
            msg = msg[: m.start()].strip()
            raise ConfigError(f"{path.name}:{m.group(1)}:{m.group(2)}: TOML syntax error: {msg}") from None
        raise ConfigError(f"{path.name}: TOML syntax error: {msg}") from None
    except ValueError:
        # tomllib lets Python's int() limit through: a number of more than 4,300 digits
        raise ConfigError(f"{path.name}: a number too long to be an amount (more than 4,300 digits)") from None
    try:
        return parse_config(data, path, text)
    except RecursionError:
        raise ConfigError(f"{path.name}: values nested too deeply to be a billing.toml") from None


MAX_CONFIG_BYTES = 1 << 20  # a real billing.toml is a few KiB; /dev/zero must not fill memory


def _read_capped(path: Path) -> bytes:
    with open(path, "rb") as f:
        data = f.read(MAX_CONFIG_BYTES + 1)
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_CONFIG_BYTES >> 20} MiB, not a billing.toml")
    return data


def parse_config(data: dict, path: Path, text: str = "") -> Config:
    c = _Checker(path, text)
    c.table(data, "", {"plans": True, "ledger": False})
    plans_raw = data["plans"]
    if not isinstance(plans_raw, list) or not plans_raw:
        raise c.fail("plans", "must be a non-empty array of tables ([[plans]])")
    plans: list[Plan] = []
    seen: dict[str, str] = {}
    for i, raw in enumerate(plans_raw):
        kp = f"plans[{i}]"
        plan = _parse_plan(c, raw, kp)
        if plan.key in seen:
            raise c.fail(
                _join(kp, "name"), f"duplicate plan name {plan.name!r} (same as {seen[plan.key]!r})"
            )
        seen[plan.key] = plan.name
        plans.append(plan)
    ledger_path = ledger_url = None
    if "ledger" in data:
        t = c.table(data["ledger"], "ledger", {"path": False, "url": False})
        if "path" in t and "url" in t:
            raise c.fail("ledger", "has both path and url: a ledger is a SQLite file or a PostgreSQL URL, not both")
        if "url" in t:
            ledger_url = c.string(t["url"], "ledger.url")
            if not ledger_url.startswith(("postgresql://", "postgres://")):
                raise c.fail("ledger.url", "must be a PostgreSQL URL (postgresql://user@host/db); "
                             "a SQLite ledger is [ledger] path")
        elif "path" in t:
            ledger_path = (path.parent / c.string(t["path"], "ledger.path")).resolve()
        else:
            raise c.fail("ledger", "needs path (a SQLite file) or url (a PostgreSQL URL)")
    return Config(path=path.resolve() if path.exists() else path, plans=tuple(plans), ledger_path=ledger_path,
                  ledger_url=ledger_url)


def _parse_plan(c: _Checker, raw: Any, kp: str) -> Plan:
    t = c.table(raw, kp, {"name": True, "prices": True, "features": False, "wallet": False})
    name = c.string(t["name"], _join(kp, "name")).strip()
    key = slug(name)
    if not key:
        raise c.fail(_join(kp, "name"), f"needs at least one letter or digit, not {name!r}")
    prices_raw = t["prices"]
    if not isinstance(prices_raw, list) or not prices_raw:
        raise c.fail(_join(kp, "prices"), "must be a non-empty array of { amount, currency, interval }")
    prices: list[PlanPrice] = []
    for j, pr in enumerate(prices_raw):
        pkp = f"{kp}.prices[{j}]"
        pt = c.table(pr, pkp, {"amount": True, "currency": True, "interval": True})
        currency = c.string(pt["currency"], _join(pkp, "currency"))
        if currency.lower() not in CURRENCIES:
            hint = did_you_mean(currency.lower(), CURRENCIES)
            raise c.fail(_join(pkp, "currency"), f"unknown currency {currency!r}{hint} (ISO 4217 code, e.g. usd)")
        price = PlanPrice(
            amount=c.integer(pt["amount"], _join(pkp, "amount")),
            currency=currency.lower(),
            interval=c.choice(pt["interval"], _join(pkp, "interval"), INTERVALS),
        )
        if any(p.currency == price.currency and p.interval == price.interval for p in prices):
            raise c.fail(pkp, f"a second {price.currency} {price.interval} price; a plan has one per currency and interval")
        prices.append(price)
    features: dict[str, Feature] = {}
    if "features" in t:
        ft = t["features"]
        if not isinstance(ft, dict):
            raise c.fail(_join(kp, "features"), f"must be a table, not {_kind(ft)}")
        for fkey, fraw in ft.items():
            features[fkey] = _parse_feature(c, fkey, fraw, f"{kp}.features.{fkey}")
    wallet = c.allocation(t["wallet"], _join(kp, "wallet")) if "wallet" in t else None
    return Plan(name=name, key=key, prices=tuple(prices), features=features, wallet=wallet)


def _parse_feature(c: _Checker, key: str, raw: Any, kp: str) -> Feature:
    if not FEATURE_KEY.match(key):
        raise c.fail(kp, "feature keys are lower-case letters, digits and _ , starting with a letter (at most 63)")
    t = c.table(
        raw,
        kp,
        {"display_name": False, "price_per_credit": False, "track_usage": False, "credits": False, "auto_top_up": False},
    )
    track = c.boolean(t.get("track_usage", False), _join(kp, "track_usage"))
    price = c.unit_price(t["price_per_credit"], _join(kp, "price_per_credit")) if "price_per_credit" in t else None
    if track and price is None:
        raise c.fail(kp, "track_usage needs price_per_credit (minor units per unit, e.g. 10 for $0.10)")
    top_up = None
    if "auto_top_up" in t:
        if track:
            raise c.fail(
                _join(kp, "auto_top_up"), "auto top-ups don't work with track_usage (usage is billed after the fact)"
            )
        tt = c.table(t["auto_top_up"], _join(kp, "auto_top_up"), {"threshold": True, "amount": True})
        top_up = AutoTopUp(
            threshold=c.integer(tt["threshold"], _join(kp, "auto_top_up.threshold")),
            amount=c.integer(tt["amount"], _join(kp, "auto_top_up.amount"), minimum=1),
        )
        if price is None:
            raise c.fail(_join(kp, "auto_top_up"), "needs price_per_credit: the wallet pays for the credits it buys")
    display = c.string(t["display_name"], _join(kp, "display_name")).strip() if "display_name" in t else key.replace("_", " ").title()
    credits = c.allocation(t["credits"], _join(kp, "credits")) if "credits" in t else None
    return Feature(key=key, display_name=display, price_per_credit=price, track_usage=track, credits=credits, auto_top_up=top_up)
