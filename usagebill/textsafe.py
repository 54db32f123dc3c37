"""Untrusted text (ids, keys, file contents) made safe to print in a one-line message:
control characters, bidi overrides and zero-width characters shown as escapes, the whole
line cut to a sane length."""

from __future__ import annotations

import unicodedata

MAX_MESSAGE = 600  # characters of a one-line message; longer ones keep their head and tail


def _escape(ch: str) -> str:
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def printable(text: str) -> str:
    """``text`` with every character a terminal would act on instead of show (C0/C1 controls,
    DEL, bidi controls, zero-width and other format characters, lone surrogates from
    undecodable bytes) replaced by its escape."""
    out = []
    for ch in text:
        cat = unicodedata.category(ch)
        out.append(_escape(ch) if cat in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp") else ch)
    return "".join(out)


def one_line(text: str, limit: int = MAX_MESSAGE) -> str:
    """A message on one line, escaped, at most ``limit`` characters (plus a note of the cut)."""
    safe = printable(str(text))
    if len(safe) <= limit:
        return safe
    head, tail = limit * 3 // 4, limit // 4
    return f"{safe[:head]}... ({len(safe) - head - tail:,} characters cut) ...{safe[-tail:]}"
