"""The admin's durable state in SQLite: workers and the objects placed on them.

Every create, close, loss and worker registration is written before the admin answers, so
an admin killed with SIGKILL finds all of it again on restart (WAL mode, one file under
the data directory). ``last_used`` changes on every step and is flushed in batches.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS workers (
    id TEXT PRIMARY KEY,
    url TEXT NOT NULL,
    embedded INTEGER NOT NULL,
    capacity TEXT NOT NULL,
    status TEXT NOT NULL,
    last_heartbeat REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS objects (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    worker_id TEXT NOT NULL,
    owner TEXT NOT NULL,
    size INTEGER NOT NULL,
    request TEXT NOT NULL,
    info TEXT NOT NULL,
    created REAL NOT NULL,
    last_used REAL NOT NULL,
    idle_ttl REAL,
    status TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS hub_specs (
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    spec TEXT NOT NULL,
    digest TEXT NOT NULL,
    pushed_at REAL NOT NULL,
    pushed_by TEXT NOT NULL,
    PRIMARY KEY (name, version)
);
"""


@dataclass
class ObjectRecord:
    """An env, vector env or sandbox the admin placed on a worker."""

    id: str
    kind: str  # "env" | "vec" | "sandbox"
    worker_id: str
    owner: str
    size: int
    request: dict[str, Any]
    info: dict[str, Any]
    created: float
    last_used: float
    idle_ttl: float | None
    status: str = "live"  # "live" | "lost"
    reason: str = ""


@dataclass
class WorkerRecord:
    """A worker as stored."""

    id: str
    url: str
    embedded: bool
    capacity: dict[str, Any]
    status: str
    last_heartbeat: float


@dataclass
class HubRecord:
    """One version of an env hub spec as stored (``spec``: the canonical JSON of a HubSpec)."""

    name: str
    version: int
    spec: str
    digest: str
    pushed_at: float
    pushed_by: str


class Store:
    """SQLite-backed store; all methods are thread-safe."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def _many(self, sql: str, rows: list[tuple[object, ...]]) -> None:
        """Run ``sql`` for every row in one transaction (one commit, not one per row)."""
        with self._lock:
            self._db.execute("BEGIN")
            try:
                self._db.executemany(sql, rows)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()

    # -- workers -------------------------------------------------------------------------

    def put_worker(self, rec: WorkerRecord) -> None:
        """Insert or replace a worker."""
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO workers VALUES (?, ?, ?, ?, ?, ?)",
                (rec.id, rec.url, int(rec.embedded), json.dumps(rec.capacity), rec.status, rec.last_heartbeat),
            )

    def set_worker_status(self, worker_id: str, status: str) -> None:
        """Mark a worker alive or lost."""
        with self._lock:
            self._db.execute("UPDATE workers SET status=? WHERE id=?", (status, worker_id))

    def workers(self) -> list[WorkerRecord]:
        """All stored workers."""
        with self._lock:
            rows = self._db.execute("SELECT * FROM workers").fetchall()
        return [WorkerRecord(r[0], r[1], bool(r[2]), json.loads(r[3]), r[4], r[5]) for r in rows]

    # -- objects -------------------------------------------------------------------------

    def put_object(self, rec: ObjectRecord) -> None:
        """Insert or replace an object record."""
        row = (
            rec.id,
            rec.kind,
            rec.worker_id,
            rec.owner,
            rec.size,
            json.dumps(rec.request),
            json.dumps(rec.info),
            rec.created,
            rec.last_used,
            rec.idle_ttl,
            rec.status,
            rec.reason,
        )
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO objects VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", row)

    def mark_lost(self, ids: list[str], reason: str) -> None:
        """Mark objects lost (their worker is gone)."""
        self._many("UPDATE objects SET status='lost', reason=? WHERE id=?", [(reason, i) for i in ids])

    def delete_objects(self, ids: list[str]) -> None:
        """Forget objects (closed or reaped)."""
        self._many("DELETE FROM objects WHERE id=?", [(i,) for i in ids])

    def touch(self, last_used: dict[str, float]) -> None:
        """Flush ``last_used`` times."""
        if not last_used:
            return
        self._many("UPDATE objects SET last_used=? WHERE id=?", [(t, i) for i, t in last_used.items()])

    def objects(self) -> list[ObjectRecord]:
        """All stored object records."""
        with self._lock:
            rows = self._db.execute("SELECT * FROM objects").fetchall()
        return [
            ObjectRecord(
                id=r[0],
                kind=r[1],
                worker_id=r[2],
                owner=r[3],
                size=r[4],
                request=json.loads(r[5]),
                info=json.loads(r[6]),
                created=r[7],
                last_used=r[8],
                idle_ttl=r[9],
                status=r[10],
                reason=r[11],
            )
            for r in rows
        ]

    # -- env hub -------------------------------------------------------------------------

    def add_hub_version(self, rec: HubRecord) -> tuple[HubRecord, bool]:
        """Store ``rec`` unless its (name, version) exists: (the stored record, whether it was added)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute(
                    "SELECT * FROM hub_specs WHERE name=? AND version=?", (rec.name, rec.version)
                ).fetchone()
                if row is None:
                    self._db.execute(
                        "INSERT INTO hub_specs VALUES (?, ?, ?, ?, ?, ?)",
                        (rec.name, rec.version, rec.spec, rec.digest, rec.pushed_at, rec.pushed_by),
                    )
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        return (rec, True) if row is None else (HubRecord(*row), False)

    def hub_version(self, name: str, version: int) -> HubRecord | None:
        """One stored hub spec version, or None."""
        with self._lock:
            row = self._db.execute("SELECT * FROM hub_specs WHERE name=? AND version=?", (name, version)).fetchone()
        return None if row is None else HubRecord(*row)

    def hub_versions(self, name: str | None = None) -> list[HubRecord]:
        """Every stored version (of ``name``), by name then version."""
        with self._lock:
            if name is None:
                rows = self._db.execute("SELECT * FROM hub_specs ORDER BY name, version").fetchall()
            else:
                rows = self._db.execute("SELECT * FROM hub_specs WHERE name=? ORDER BY version", (name,)).fetchall()
        return [HubRecord(*r) for r in rows]
