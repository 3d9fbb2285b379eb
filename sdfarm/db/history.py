"""History queries: find past jobs. (First version: latest jobs, by seed or prompt substring.)"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from sdfarm.db.models import Job


def find_jobs(session: Session, *, seed: int | None = None, prompt: str | None = None,
              limit: int = 20, offset: int = 0) -> Sequence[Job]:
    query = select(Job)
    if seed is not None:
        query = query.where(Job.seed == seed)
    if prompt:
        query = query.where(Job.prompt.contains(prompt, autoescape=True))
    return session.scalars(query.order_by(Job.id.desc()).limit(limit).offset(offset)).all()


def job_fields(job: Job) -> dict[str, object]:
    """Every recorded column of ``job``, JSON-ready."""
    out: dict[str, object] = {}
    for column in Job.__table__.columns:
        value = getattr(job, column.key)
        if hasattr(value, "isoformat"):
            value = value.isoformat(sep=" ", timespec="seconds")
        elif hasattr(value, "value"):
            value = value.value
        out[column.key] = value
    return out
