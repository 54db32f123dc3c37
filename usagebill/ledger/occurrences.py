"""A private scratch table counting how often each content hash was seen (the importer's
occurrence numbers): exact, on disk, so memory stays flat whatever the file's size."""

from __future__ import annotations

import sqlite3


class Occurrences:
    def __init__(self):
        self.db = sqlite3.connect("", isolation_level=None)  # a private temporary file
        self.db.execute("PRAGMA journal_mode = OFF")
        self.db.execute("PRAGMA synchronous = OFF")
        self.db.execute("PRAGMA cache_size = -16384")  # 16 MiB: about a million counts stay in memory
        self.db.execute("CREATE TABLE seen (h INTEGER PRIMARY KEY, n INTEGER NOT NULL)")

    def take(self, hashes: list[int]) -> list[int]:
        """For each hash, how many times it was seen before (counting this list in order)."""
        counts: dict[int, int] = {}
        distinct = list(dict.fromkeys(hashes))
        for i in range(0, len(distinct), 500):
            chunk = distinct[i : i + 500]
            counts.update(self.db.execute(f"SELECT h, n FROM seen WHERE h IN ({','.join('?' * len(chunk))})", chunk))
        out = []
        get = counts.get
        for h in hashes:
            n = get(h, 0)
            out.append(n)
            counts[h] = n + 1
        self.db.execute("BEGIN")
        self.db.executemany("INSERT OR REPLACE INTO seen (h, n) VALUES (?, ?)", [(h, counts[h]) for h in distinct])
        self.db.execute("COMMIT")
        return out

    def close(self) -> None:
        self.db.close()
