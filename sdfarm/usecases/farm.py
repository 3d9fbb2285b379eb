"""The farm's use-cases: submit a job file's plan (record, then enqueue), cancel, retry."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from celery import Celery

from sdfarm.broker.queue import enqueue
from sdfarm.config import Settings
from sdfarm.db.engine import session_factory
from sdfarm.db.jobs import (
    Canceled,
    QueuedBatch,
    cancel_jobs,
    new_sweep_batches,
    queued_batches,
    retry_jobs,
)
from sdfarm.db.sweeps import require_jobs, require_sweep
from sdfarm.errors import BrokerUnavailable
from sdfarm.scheduler.plan import Plan
from sdfarm.usecases.record import record


@dataclass
class Submitted:
    sweep_id: int
    #: Images of the sweep, and how many of them were queued (the rest reuse done images).
    images: int
    queued: int
    batches: int


def submit(settings: Settings, plan: Plan, *, priority: int = 0, force: bool = False,
           app: Celery | None = None) -> Submitted:
    """Record the sweep (one transaction), then enqueue one task per batch. Should this process
    die between the two, the jobs are queued in the database and ``recover`` sends them."""
    sweep_id = record(settings, plan, priority=priority, force=force)
    queued = 0

    def counted(batches: Iterator[QueuedBatch]) -> Iterator[QueuedBatch]:
        nonlocal queued
        for batch in batches:
            queued += len(batch.job_ids)
            yield batch

    # Read from the database as they are published: memory stays flat for a million jobs.
    with session_factory(settings.database_url)() as session:
        try:
            sent = enqueue(settings, counted(new_sweep_batches(session, sweep_id)), app=app)
        except BrokerUnavailable as exc:
            raise BrokerUnavailable(f"sweep {sweep_id} is recorded but not queued: {exc}") from None
    return Submitted(sweep_id=sweep_id, images=plan.images, queued=queued, batches=sent)


def cancel(settings: Settings, *, sweep_id: int | None = None,
           job_ids: Sequence[int] | None = None) -> Canceled:
    """Cancel in the database only: messages of canceled jobs become no-ops."""
    factory = session_factory(settings.database_url)
    with factory.begin() as session:
        require_sweep(session, sweep_id)
        require_jobs(session, job_ids or ())
        return cancel_jobs(session, sweep_id=sweep_id, job_ids=job_ids)


def retry(settings: Settings, sweep_id: int, *, app: Celery | None = None) -> int:
    """Failed and canceled jobs of the sweep back to the queue (attempts reset) and sent."""
    factory = session_factory(settings.database_url)
    with factory.begin() as session:
        require_sweep(session, sweep_id)
        ids = retry_jobs(session, sweep_id)
    if ids:
        with factory() as session:
            batches = queued_batches(session, [sweep_id])
        wanted = set(ids)
        enqueue(settings, [b for b in (b.only(wanted.__contains__) for b in batches) if b.job_ids],
                app=app)
    return len(ids)
