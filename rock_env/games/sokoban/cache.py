"""An optional on-disk cache of generated Sokoban levels, for runs that replay the same seeds.

Off by default: generation is fast enough without it (see ``benchmarks/sokoban_vs_gem.py``,
which runs with the cache off). Turn it on per env with ``SokobanEnv(level_cache=...)`` or
for every env of a process with ``$ROCK_ENV_SOKOBAN_CACHE`` (a directory). A hard level costs
10-100 ms to generate and well under a millisecond to read back.

Levels live in one SQLite file per :data:`~rock_env.games.sokoban.generator.GENERATOR_VERSION`
in the cache directory, keyed by every input of :func:`generate_room` (room size, walk steps,
box count, seed), so a change to the generator never serves a stale level, and ids with the
same inputs share entries. Seeds for which no room can be made are cached too. Many processes
may share a directory (SQLite's write-ahead log; readers never wait for the generator).

The cache can only ever make a reset faster: a row that does not decode to a well-formed
level is ignored and replaced, and any SQLite error (unwritable directory, corrupt or locked
file) logs one warning and turns the cache off for that env, which then generates as usual.
"""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import threading
from pathlib import Path
from typing import Any

from rock_env.errors import InvalidArgument
from rock_env.games.sokoban.generator import GENERATOR_VERSION, PLAYER, Room, RoomGenerationError, generate_room
from rock_env.paths import home_dir

logger = logging.getLogger(__name__)

#: Environment variable: a directory that turns the cache on for envs that do not say otherwise.
CACHE_ENV_VAR = "ROCK_ENV_SOKOBAN_CACHE"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS levels (
    rows INTEGER NOT NULL,
    cols INTEGER NOT NULL,
    steps INTEGER NOT NULL,
    boxes INTEGER NOT NULL,
    seed TEXT NOT NULL,
    fixed BLOB,
    state BLOB,
    player INTEGER,
    PRIMARY KEY (rows, cols, steps, boxes, seed)
) WITHOUT ROWID
"""


def default_cache_dir() -> Path:
    """Where ``level_cache=True`` keeps levels: ``<rock-env home>/sokoban-levels``."""
    return home_dir() / "sokoban-levels"


def resolve_cache_dir(level_cache: bool | str | os.PathLike[str] | None) -> Path | None:
    """The cache directory an env should use, or ``None`` for no cache.

    ``None`` follows ``$ROCK_ENV_SOKOBAN_CACHE`` (unset or empty: no cache); ``False``: no
    cache; ``True``: :func:`default_cache_dir`; a path: that directory.
    """
    if level_cache is None:
        value = os.environ.get(CACHE_ENV_VAR, "").strip()
        return Path(value).expanduser() if value else None
    if level_cache is False:
        return None
    if level_cache is True:
        return default_cache_dir()
    if isinstance(level_cache, (str, os.PathLike)) and str(level_cache).strip():
        return Path(level_cache).expanduser()
    raise InvalidArgument(
        f"level_cache must be True, False, None or a directory path, got {level_cache!r}: "
        "e.g. level_cache='~/.cache/sokoban' or level_cache=True."
    )


class LevelCache:
    """Generated levels in ``directory``; :meth:`generate` is :func:`generate_room` with look-up.

    Safe to use from several threads; pickles without its connection (reopened on first use).
    """

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.path = self.directory / f"sokoban-levels-v{GENERATOR_VERSION}.sqlite3"
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self.enabled = True
        #: Look-ups served from the file, and levels generated and stored (for this object).
        self.hits = 0
        self.misses = 0

    def generate(self, dim: tuple[int, int], num_steps: int, num_boxes: int, seed: int) -> Room:
        """The room :func:`generate_room` makes for these inputs, from the file when it has it.

        Raises:
            RoomGenerationError: no room exists for this seed (cached like a room).
        """
        rows, cols = int(dim[0]), int(dim[1])
        key = (rows, cols, int(num_steps), int(num_boxes), str(int(seed)))
        found = self._lookup(key)
        if isinstance(found, Room):
            self.hits += 1
            return found
        if found is _NO_ROOM:
            self.hits += 1
            raise RoomGenerationError(
                f"could not generate a {rows}x{cols} Sokoban room with {num_boxes} boxes (seed {seed}; cached result)."
            )
        self.misses += 1
        try:
            room = generate_room((rows, cols), num_steps, num_boxes, seed)
        except RoomGenerationError:
            self._store(key, None)
            raise
        self._store(key, room)
        return room

    def close(self) -> None:
        """Close the SQLite connection (the cache reopens it if used again)."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    # -- storage -------------------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            # Switching to WAL and creating the table need the write lock, and SQLite answers
            # "locked" at once (no busy wait) when several processes open a new file together:
            # the set-up runs under a file lock, once per connection.
            with open(self.path.with_suffix(".lock"), "a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                conn = sqlite3.connect(self.path, timeout=10.0, isolation_level=None, check_same_thread=False)
                try:
                    conn.execute("PRAGMA journal_mode=WAL")
                    conn.execute("PRAGMA synchronous=NORMAL")
                    conn.execute(_SCHEMA)
                except BaseException:
                    conn.close()
                    raise
            self._conn = conn
        return self._conn

    def _lookup(self, key: tuple[int, int, int, int, str]) -> Room | object | None:
        row = self._run(
            "SELECT fixed, state, player FROM levels WHERE rows=? AND cols=? AND steps=? AND boxes=? AND seed=?", key
        )
        if not row:
            return None
        fixed, state, player = row[0]
        if fixed is None and state is None and player is None:
            return _NO_ROOM
        return _decode(key[0], key[1], fixed, state, player)

    def _store(self, key: tuple[int, int, int, int, str], room: Room | None) -> None:
        values = (None, None, None) if room is None else (bytes(room.fixed), bytes(room.state), room.player)
        self._run("INSERT OR REPLACE INTO levels VALUES (?, ?, ?, ?, ?, ?, ?, ?)", (*key, *values))

    def _run(self, sql: str, params: tuple[Any, ...]) -> list[Any]:
        if not self.enabled:
            return []
        with self._lock:
            try:
                return self._connection().execute(sql, params).fetchall()
            except (sqlite3.Error, OSError) as exc:
                self.enabled = False
                logger.warning("the Sokoban level cache at %s is off for this env: %s", self.path, exc)
                return []

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_conn"] = None
        state["_lock"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def __del__(self) -> None:
        conn = self.__dict__.get("_conn")
        if conn is not None:
            conn.close()


_NO_ROOM = object()


def _decode(rows: int, cols: int, fixed: Any, state: Any, player: Any) -> Room | None:
    """The stored level, or ``None`` if the row is not a well-formed level of this size."""
    cells = rows * cols
    if not (isinstance(fixed, bytes) and isinstance(state, bytes) and isinstance(player, int)):
        return None
    if len(fixed) != cells or len(state) != cells or not 0 <= player < cells:
        return None
    if max(fixed) > 2 or max(state) > PLAYER or state[player] != PLAYER or state.count(PLAYER) != 1:
        return None
    return Room(rows=rows, cols=cols, fixed=tuple(fixed), state=tuple(state), player=player)
