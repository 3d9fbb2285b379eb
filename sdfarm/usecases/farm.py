"""The farm's use-cases: submit a job file's plan (record, then enqueue), cancel, retry."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from celery import Celery

from sdfarm.broker.queue import enqueue
from sdfarm.config import Settings
from sdfarm.db.batches import QueuedBatch, new_sweep_batches, queued_batches
from sdfarm.db.engine import session_factory
from sdfarm.db.farm_status import sweep_counts
from sdfarm.db.jobs import Canceled, cancel_jobs, retry_jobs
from sdfarm.db.models import JobStatus
from sdfarm.db.sweeps import require_jobs, require_sweep
from sdfarm.db.waiting import Settled, settle_waiting
from sdfarm.errors import BrokerUnavailable
from sdfarm.files import place_image
from sdfarm.scheduler.plan import Plan
from sdfarm.usecases.record import record

log = logging.getLogger(__name__)


@dataclass
class Submitted:
    sweep_id: int
    #: Images of the sweep, and how many of them were queued (the rest reuse done images, or
    #: wait for the identical jobs of another sweep that is rendering them).
    images: int
    queued: int
    batches: int
    waiting: int = 0


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
        counts = sweep_counts(session, sweep_id)
    waiting = counts.counts[JobStatus.waiting.value] if counts else 0
    return Submitted(sweep_id=sweep_id, images=plan.images, queued=queued, batches=sent,
                     waiting=waiting)


def cancel(settings: Settings, *, sweep_id: int | None = None,
           job_ids: Sequence[int] | None = None) -> Canceled:
    """Cancel in the database only: messages of canceled jobs become no-ops."""
    factory = session_factory(settings.database_url)
    with factory.begin() as session:
        require_sweep(session, sweep_id)
        require_jobs(session, job_ids or ())
        result = cancel_jobs(session, sweep_id=sweep_id, job_ids=job_ids)
        # Jobs of other sweeps that waited for these render them themselves now.
        settled = settle_waiting(session, place_image)
    try:
        send_requeued(settings, settled)
    except BrokerUnavailable as exc:  # queued in the database: `recover` sends them
        log.warning("could not send the jobs that waited for the canceled ones: %s", exc)
    return result


def send_requeued(settings: Settings, settled: Settled, *, app: Celery | None = None) -> None:
    """Send the jobs that stopped waiting for another sweep's job and render themselves."""
    if not settled.requeued:
        return
    wanted = {i for ids in settled.requeued.values() for i in ids}
    with session_factory(settings.database_url)() as session:
        batches = queued_batches(session, list(settled.requeued), executor="farm")
    enqueue(settings, [b for b in (b.only(wanted.__contains__) for b in batches) if b.job_ids],
            app=app)


def retry(settings: Settings, sweep_id: int, *, app: Celery | None = None) -> int:
    """Failed and canceled jobs of the sweep back to the queue (attempts reset) and sent."""
    factory = session_factory(settings.database_url)
    with factory.begin() as session:
        sweep = require_sweep(session, sweep_id)
        ids = retry_jobs(session, sweep_id)
        if ids:  # the user hands them to the farm now, whoever recorded them
            sweep.executor, sweep.executor_host, sweep.executor_pid = "farm", None, None
    if ids:
        with factory() as session:
            batches = queued_batches(session, [sweep_id])
        wanted = set(ids)
        enqueue(settings, [b for b in (b.only(wanted.__contains__) for b in batches) if b.job_ids],
                app=app)
    return len(ids)
