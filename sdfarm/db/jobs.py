"""Queue operations on Job rows: claim, renew, finish. The database is the queue's truth.

Every function takes the session first; the caller owns the transaction
(``with factory.begin() as session:``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session, selectinload

from sdfarm.db.models import Job, JobStatus, utcnow


def claim_jobs(session: Session, job_ids: Sequence[int], *, token: str, worker: str,
               lease_seconds: float, now: datetime | None = None) -> list[Job]:
    """Take the jobs among ``job_ids`` that nobody holds: queued ones, or running ones whose
    lease expired. A conditional UPDATE, so two workers never both get a job.
    """
    now = now or utcnow()
    session.execute(
        update(Job)
        .where(Job.id.in_(list(job_ids)),
               or_(Job.status == JobStatus.queued,
                   and_(Job.status == JobStatus.running, Job.lease_until < now)))
        .values(status=JobStatus.running, claim_token=token, worker=worker, started_at=now,
                lease_until=now + timedelta(seconds=lease_seconds), attempts=Job.attempts + 1,
                error=None)
        .execution_options(synchronize_session=False)
    )
    return list(session.scalars(
        select(Job).where(Job.claim_token == token).options(selectinload(Job.sweep)).order_by(Job.seq)
    ))


def renew_lease(session: Session, token: str, lease_seconds: float) -> int:
    """Push the lease of everything ``token`` holds; returns how many rows it still holds."""
    result = session.execute(
        update(Job)
        .where(Job.claim_token == token, Job.status == JobStatus.running)
        .values(lease_until=utcnow() + timedelta(seconds=lease_seconds))
        .execution_options(synchronize_session=False)
    )
    return result.rowcount


def canceled_among(session: Session, job_ids: Iterable[int]) -> set[int]:
    return set(session.scalars(
        select(Job.id).where(Job.id.in_(list(job_ids)), Job.status == JobStatus.canceled)))


def finish_job(session: Session, job_id: int, token: str, status: JobStatus, **values: object) -> bool:
    """Record an outcome for a job ``token`` still holds; a job canceled or re-claimed meanwhile
    keeps its newer state. Returns whether the row was updated."""
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.claim_token == token, Job.status == JobStatus.running)
        .values(status=status, finished_at=utcnow(), lease_until=None, **values)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


def get_job(session: Session, job_id: int) -> Job | None:
    return session.get(Job, job_id, options=[selectinload(Job.sweep)])
