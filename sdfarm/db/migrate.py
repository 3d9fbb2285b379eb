"""Alembic, run from code: every entry point upgrades the database to head before use.

Concurrent first starts (ten ``sdfarm submit`` at once on an empty database) are serialised:
an advisory lock on PostgreSQL, a lock file beside the database on SQLite.
"""

from __future__ import annotations

import contextlib
import fcntl
from functools import lru_cache
from pathlib import Path

from sqlalchemy import Engine, inspect, text

_MIGRATIONS = Path(__file__).with_name("migrations")
#: Arbitrary constant naming sdfarm's PostgreSQL advisory lock.
_PG_LOCK_ID = 0x5DFA12


def _config(connection=None):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


@lru_cache(maxsize=1)
def head_revisions() -> frozenset[str]:
    """Every head: features may add migrations on parallel branches off a common base."""
    from alembic.script import ScriptDirectory

    return frozenset(ScriptDirectory.from_config(_config()).get_heads())


def current_revisions(engine: Engine) -> frozenset[str]:
    with engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return frozenset()
        return frozenset(conn.execute(text("SELECT version_num FROM alembic_version")).scalars())


@contextlib.contextmanager
def _exclusive(engine: Engine):
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _PG_LOCK_ID})
            conn.commit()
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _PG_LOCK_ID})
                conn.commit()
    elif engine.dialect.name == "sqlite" and engine.url.database not in (None, "", ":memory:"):
        with open(f"{engine.url.database}.migrate-lock", "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
    else:
        yield


def upgrade_to_head(engine: Engine) -> None:
    """Bring the schema to the newest revision; cheap when it already is."""
    if current_revisions(engine) == head_revisions():
        return
    from alembic import command

    with _exclusive(engine):
        if current_revisions(engine) == head_revisions():  # another process did it meanwhile
            return
        with engine.begin() as conn:
            command.upgrade(_config(conn), "heads")
