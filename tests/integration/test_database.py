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


def _schema_drift(url: str) -> list:
    """What autogenerate would change: the models and the migrations must describe one schema.
    Full-text objects are written in raw SQL by the history migration and left out."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from sdfarm.db.models import Base

    def ours(obj, name, type_, reflected, compare_to) -> bool:
        if type_ == "table" and name and name.startswith("jobs_fts"):
            return False
        return not (type_ in ("column", "index") and name and "_tsv" in name)

    with get_engine(url).connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"include_object": ours})
        return compare_metadata(ctx, Base.metadata)


def test_the_migrations_build_exactly_the_schema_the_models_declare_on_sqlite(tmp_path):
    assert _schema_drift(f"sqlite:///{tmp_path / 'farm.db'}") == []


def test_the_migrations_build_exactly_the_schema_the_models_declare_on_postgresql(postgres_url):
    assert _schema_drift(postgres_url) == []


def test_jobs_recorded_with_combined_sampler_names_are_split_by_the_sampling_migration(tmp_path):
    # Given a database at the revision before schedules, holding old combined sampler names
    from alembic import command
    from sqlalchemy import create_engine, text

    from sdfarm.db.migrate import _config

    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = create_engine(url)
    with engine.begin() as conn:
        command.upgrade(_config(conn), "0005_merge")
        conn.execute(text("INSERT INTO sweeps (id, name, kind, created_at, output_dir, batch_size, "
                          "allow_pickle, priority) VALUES (1, 's', 'render', '2026-01-01', '/o', "
                          "4, 0, 0)"))
        for i, sampler in enumerate(["DPM++ 2M Karras", "DPM2 a Karras", "Euler a", "Restart"]):
            conn.execute(text(
                "INSERT INTO jobs (sweep_id, seq, key, status, model, prompt, negative_prompt, "
                "seed, sampler, steps, cfg, width, height, clip_skip, batch_index, output_path, "
                "attempts, created_at) VALUES (1, :i, 'k', 'done', 'builtin:tiny', 'a cat', '', "
                ":i, :sampler, 20, 7, 64, 64, 1, 0, '/o/x.png', 0, '2026-01-01')"),
                {"i": i, "sampler": sampler})
    engine.dispose()
    # When it is opened (and so upgraded)
    with get_engine(url).connect() as conn:
        rows = conn.execute(text("SELECT sampler, schedule, eta FROM jobs ORDER BY seq")).all()
    # Then combined names are split, the rest is at the Automatic schedule and eta unset
    assert [tuple(r) for r in rows] == [("DPM++ 2M", "Karras", None), ("DPM2 a", "Karras", None),
                                        ("Euler a", "Automatic", None),
                                        ("Restart", "Automatic", None)]
