"""Shared by the history and index tests: a database URL for each backend, and jobs recorded
the way ``record_plan`` records them (one bulk insert)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event, insert

from sdfarm.db.engine import dispose_all, get_engine, session_factory
from sdfarm.db.models import Job, JobStatus, Sweep

#: Recorded jobs are dated from here on, one minute apart unless a test says otherwise.
T0 = datetime(2026, 11, 1, 12, 0, 0)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    """The same test on a SQLite file and on a fresh database of a real PostgreSQL server."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'history.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    yield url
    dispose_all()  # one fresh PostgreSQL database per test: do not keep their connections


def add_jobs(url: str, jobs: list[dict[str, Any]], *, sweep: str = "s", kind: str = "render",
             start: datetime = T0) -> list[int]:
    """Record ``jobs`` (each a partial row) in a new sweep with one bulk insert; returns ids."""
    factory = session_factory(url)
    with factory.begin() as session:
        s = Sweep(name=sweep, kind=kind, output_dir=f"/out/{sweep}")
        session.add(s)
        session.flush()
        rows = []
        for i, job in enumerate(jobs):
            row = {
                "sweep_id": s.id, "seq": i, "key": f"k{i}", "status": JobStatus.done,
                "model": "/models/dreamshaper_8.safetensors", "model_hash": "879db523c3",
                "prompt": "a cat", "negative_prompt": "", "seed": i, "sampler": "Euler a",
                "schedule": "Automatic",
                "steps": 20, "cfg": 7.0, "width": 512, "height": 512, "clip_skip": 1,
                "batch_index": 0, "output_path": f"/out/{sweep}/{i:05d}.png", "attempts": 0,
                "created_at": start + timedelta(minutes=i),
            }
            row.update(job)
            rows.append(row)
        session.execute(insert(Job), rows)
    with factory() as session:
        from sqlalchemy import select

        return list(session.scalars(select(Job.id).where(Job.sweep_id == s.id).order_by(Job.seq)))


class StatementLog:
    """The SELECT statements an engine runs, with their parameters (to EXPLAIN them)."""

    def __init__(self, url: str) -> None:
        self.engine = get_engine(url)
        self.statements: list[tuple[str, Any]] = []
        event.listen(self.engine, "before_cursor_execute", self._log)

    def _log(self, conn, cursor, statement, parameters, context, executemany) -> None:
        if statement.lstrip().upper().startswith(("SELECT", "WITH")):
            self.statements.append((statement, parameters))

    def close(self) -> None:
        event.remove(self.engine, "before_cursor_execute", self._log)
