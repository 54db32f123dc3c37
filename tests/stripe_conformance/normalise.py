"""Outcomes of one scenario on two Stripes, made comparable: ids become ``<cus:1>`` in order of
first appearance, times become offsets from the scenario's start (``T+3600``), and the
per-run prefix of meter event names is dropped."""

from __future__ import annotations

import re
from datetime import datetime

_ID = re.compile(r"\b(cus|sub|si|in|il|ii|price|prod|mtr|clock|evt|req|mes|ubb|ube)_(?:test_|tmp_)?[A-Za-z0-9]{6,}\b")
_RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
_PREFIX = re.compile(r"\buconf_[0-9a-f]{8}_")
TIME_FLOOR = 1_000_000_000  # integers above this are Unix times


class Normaliser:
    def __init__(self, t0: int):
        self.t0 = t0
        self.ids: dict[str, str] = {}

    def _id(self, match: re.Match) -> str:
        raw, kind = match.group(0), match.group(1)
        if raw not in self.ids:
            self.ids[raw] = f"<{kind}:{sum(1 for v in self.ids.values() if v.startswith(f'<{kind}:')) + 1}>"
        return self.ids[raw]

    def __call__(self, value):
        if isinstance(value, dict):
            return {self(k): self(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self(v) for v in value]
        if isinstance(value, bool) or value is None:
            return value
        if isinstance(value, int) and value > TIME_FLOOR:
            return f"T{value - self.t0:+d}"
        if isinstance(value, str):
            if _RFC3339.match(value):
                return f"T{int(datetime.fromisoformat(value.replace('Z', '+00:00')).timestamp()) - self.t0:+d}"
            return _ID.sub(self._id, _PREFIX.sub("", value))
        return value
