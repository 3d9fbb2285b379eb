"""Engines and sessions, one engine per URL per process, with the schema brought up to date.

SQLite runs in WAL mode with a busy timeout, so a CLI reading history while a render writes
never sees ``database is locked``.
"""

from __future__ import annotations

import threading
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from sdfarm.db.migrate import upgrade_to_head
from sdfarm.errors import DiskFault

#: What a session raises when the database cannot be reached or refuses a statement: callers
#: outside ``db/`` catch this name rather than import SQLAlchemy's.
DatabaseError = DBAPIError

#: SQLite's primary result codes of a disk that fails it, as the errno a file write gets.
_SQLITE_DISK_FAULTS = {13: "ENOSPC",  # SQLITE_FULL: "database or disk is full"
                       10: "EIO"}     # SQLITE_IOERR

_engines: dict[str, Engine] = {}
_lock = threading.Lock()

#: Milliseconds a SQLite writer waits for another writer before giving up.
SQLITE_BUSY_TIMEOUT_MS = 60_000


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cur.close()


def _sqlite_begin(conn) -> None:
    # BEGIN IMMEDIATE takes the write lock up front: two writers queue on busy_timeout instead
    # of one failing mid-transaction when it upgrades a read lock.
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def get_engine(url: str) -> Engine:
    """The process's engine for ``url``, created and migrated on first use."""
    with _lock:
        engine = _engines.get(url)
        if engine is None:
            engine = _create(url)
            upgrade_to_head(engine)
            _engines[url] = engine
        return engine


def _create(url: str) -> Engine:
    u = make_url(url)
    if u.get_backend_name() == "sqlite":
        if u.database and u.database != ":memory:":
            Path(u.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000,
                                                  "isolation_level": None})
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    return create_engine(url, pool_pre_ping=True)


def database_exists(url: str) -> bool:
    """Whether opening ``url`` would find a database rather than create one: a SQLite file is
    checked on disk (read-only commands must not leave an empty sdfarm.db behind); servers are
    assumed to exist."""
    u = make_url(url)
    if u.get_backend_name() != "sqlite":
        return True
    return bool(u.database) and u.database != ":memory:" and Path(u.database).is_file()


def sqlite_file(url: str) -> Path | None:
    """The database file of a SQLite URL (``None`` for a server or an in-memory database)."""
    u = make_url(url)
    if u.get_backend_name() != "sqlite" or not u.database or u.database == ":memory:":
        return None
    return Path(u.database).resolve()


def disk_fault_of(exc: BaseException, url: str) -> DiskFault | None:
    """``exc`` as a :class:`DiskFault` when it is a SQLite database whose disk is full or
    failing: an error of this machine (one line for the user, the jobs given back), not of the
    jobs. ``None`` for anything else, a database server's full disk included (a worker retries
    those later, like any unreachable database)."""
    code = getattr(getattr(exc, "orig", None), "sqlite_errorcode", None)
    u = make_url(url)
    if code is None or u.get_backend_name() != "sqlite" or (code & 0xFF) not in _SQLITE_DISK_FAULTS:
        return None
    where = Path(u.database or ".").resolve()
    detail = str(getattr(exc, "orig", exc)).strip() or type(exc).__name__
    return DiskFault(str(where.parent), _SQLITE_DISK_FAULTS[code & 0xFF], detail,
                     what=f"the database {where.name}",
                     advice="what was recorded before is kept; free space there (or fix the "
                            "disk) and run the command again")


def make_room(url: str) -> bool:
    """After a SQLite database met a full disk: copy its write-ahead log into the database
    and start the log over, so that the next transactions reuse the log's space instead of
    growing it (giving jobs back needs no more room than that). Returns whether it did."""
    import sqlite3

    path = sqlite_file(url)
    if path is None:
        return False
    # A connection of its own: a pooled one may still hold the statement that failed.
    connection = sqlite3.connect(path, timeout=SQLITE_BUSY_TIMEOUT_MS / 1000)
    try:
        busy, _, _ = connection.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()
    except sqlite3.Error:
        return False
    finally:
        connection.close()
    return not busy


def session_factory(url: str) -> sessionmaker[Session]:
    return sessionmaker(get_engine(url), expire_on_commit=False)


def dispose_all() -> None:
    """Drop every engine (after a fork, or between tests)."""
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()
