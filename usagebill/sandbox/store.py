"""The sandbox's state: Stripe objects as JSON rows in SQLite.

One connection per Store, guarded by a re-entrant lock, and every request runs inside one
``BEGIN IMMEDIATE`` transaction (``Store.transaction``), so requests are serialised both
between threads of one process and between processes sharing the file. ``path=None`` keeps
everything in memory (tests)."""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import string
import threading
from contextlib import contextmanager
from typing import Any, Iterator

from ..sqlite_wal import use_wal

_ALPHABET = string.ascii_letters + string.digits

_SCHEMA = """
CREATE TABLE IF NOT EXISTS objects (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    object TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS objects_by_type ON objects (object, seq);
CREATE TABLE IF NOT EXISTS kv (
    ns TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (ns, key)
);
"""

# Modules that need tables of their own (e.g. meter events, which can number millions)
# append their DDL here at import time; every Store runs it on open.
EXTRA_SCHEMA: list[str] = []


class Store:
    def __init__(self, path: str | os.PathLike | None = None):
        self.path = None if path is None else os.fspath(path)
        self._lock = threading.RLock()
        self._depth = 0
        if self.path is not None:
            parent = os.path.dirname(os.path.abspath(self.path))
            os.makedirs(parent, exist_ok=True)
            if not os.path.exists(self.path):
                # created private: it may hold customer e-mails
                os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
        self.db = sqlite3.connect(
            self.path or ":memory:", isolation_level=None, check_same_thread=False, timeout=30
        )
        self.db.execute("PRAGMA busy_timeout = 30000")
        if self.path is not None:
            use_wal(self.db)
            self.db.execute("PRAGMA synchronous = NORMAL")
        with self._lock:  # executescript commits by itself; the DDL is idempotent
            self.db.executescript(_SCHEMA + "".join(EXTRA_SCHEMA))

    def close(self) -> None:
        with self._lock:
            self.db.close()

    @contextmanager
    def transaction(self) -> Iterator["Store"]:
        """Serialise: one writer at a time across threads and processes. Re-entrant."""
        with self._lock:
            if self._depth:
                self._depth += 1
                try:
                    yield self
                finally:
                    self._depth -= 1
                return
            self.db.execute("BEGIN IMMEDIATE")
            self._depth = 1
            try:
                yield self
            except BaseException:
                self._depth = 0
                self.db.execute("ROLLBACK")
                raise
            self._depth = 0
            self.db.execute("COMMIT")

    # -- ids ---------------------------------------------------------------------------
    @staticmethod
    def new_id(prefix: str, length: int = 24) -> str:
        return prefix + "_" + "".join(secrets.choice(_ALPHABET) for _ in range(length))

    # -- objects -----------------------------------------------------------------------
    def insert(self, obj: dict) -> dict:
        """Store a new object (it must carry "id" and "object"). A taken id is an error."""
        try:
            self.db.execute(
                "INSERT INTO objects (id, object, data) VALUES (?, ?, ?)",
                (obj["id"], obj["object"], json.dumps(obj)),
            )
        except sqlite3.IntegrityError:
            from .errors import StripeError

            raise StripeError(
                400, f"Object with id {obj['id']} already exists.", code="resource_already_exists", param="id"
            ) from None
        return obj

    def get(self, object_type: str, id: str) -> dict | None:
        row = self.db.execute(
            "SELECT data FROM objects WHERE id = ? AND object = ?", (id, object_type)
        ).fetchone()
        return None if row is None else json.loads(row[0])

    def find(self, object_type: str, id: str, *, kind: str | None = None, param: str = "id") -> dict:
        """An object that must exist (and not be deleted), or Stripe's 404 "No such <kind>"."""
        obj = self.get(object_type, id)
        if obj is None or obj.get("deleted"):
            from .errors import missing

            raise missing(kind or object_type.split(".")[-1].replace("_", " "), id, param=param)
        return obj

    def put(self, obj: dict) -> dict:
        """Replace a stored object (same id), keeping its position in lists."""
        cur = self.db.execute(
            "UPDATE objects SET data = ? WHERE id = ? AND object = ?",
            (json.dumps(obj), obj["id"], obj["object"]),
        )
        if cur.rowcount != 1:
            raise KeyError(obj["id"])
        return obj

    def delete(self, object_type: str, id: str) -> bool:
        cur = self.db.execute("DELETE FROM objects WHERE id = ? AND object = ?", (id, object_type))
        return cur.rowcount == 1

    def all(self, object_type: str, **equals: Any) -> list[dict]:
        """Objects of a type, newest first, whose top-level fields equal the given values."""
        sql = "SELECT data FROM objects WHERE object = ?"
        args: list[Any] = [object_type]
        for field, value in equals.items():
            if not field.isidentifier():
                raise ValueError(field)
            if value is None:
                sql += f" AND json_extract(data, '$.{field}') IS NULL"
            else:
                sql += f" AND json_extract(data, '$.{field}') = ?"
                args.append(json.dumps(value) if isinstance(value, (dict, list)) else value)
        sql += " ORDER BY seq DESC"
        return [json.loads(r[0]) for r in self.db.execute(sql, args)]

    # -- small keyed values (idempotency records, session tokens, counters) -------------
    def kv_get(self, ns: str, key: str) -> Any:
        row = self.db.execute("SELECT value FROM kv WHERE ns = ? AND key = ?", (ns, key)).fetchone()
        return None if row is None else json.loads(row[0])

    def kv_set(self, ns: str, key: str, value: Any) -> None:
        self.db.execute(
            "INSERT INTO kv (ns, key, value) VALUES (?, ?, ?) "
            "ON CONFLICT (ns, key) DO UPDATE SET value = excluded.value",
            (ns, key, json.dumps(value)),
        )

    def kv_delete(self, ns: str, key: str) -> None:
        self.db.execute("DELETE FROM kv WHERE ns = ? AND key = ?", (ns, key))
