"""The database: created and migrated automatically, SQLite in WAL mode."""

from __future__ import annotations

import sqlite3

from sqlalchemy import inspect

from sdfarm.db.engine import get_engine
from sdfarm.db.migrate import current_revisions, head_revisions


def test_an_empty_database_is_upgraded_to_the_newest_schema_on_first_use(tmp_path):
    engine = get_engine(f"sqlite:///{tmp_path / 'new' / 'farm.db'}")
    tables = set(inspect(engine).get_table_names())
    assert {"sweeps", "jobs", "alembic_version"} <= tables
    assert current_revisions(engine) == head_revisions()


def test_sqlite_runs_in_wal_mode(tmp_path):
    path = tmp_path / "farm.db"
    get_engine(f"sqlite:///{path}")
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_postgresql_gets_the_same_schema(postgres_url):
    engine = get_engine(postgres_url)
    assert {"sweeps", "jobs"} <= set(inspect(engine).get_table_names())
    assert current_revisions(engine) == head_revisions()
