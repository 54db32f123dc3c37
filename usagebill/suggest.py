"""The "did you mean" hint of messages about unknown names (keys, columns, features, plans)."""

from __future__ import annotations

import difflib
from typing import Iterable


def did_you_mean(word: str, options: Iterable[str]) -> str:
    """`` (did you mean 'api_calls'?)`` for the closest option, or ``""``."""
    close = difflib.get_close_matches(word, list(options), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
