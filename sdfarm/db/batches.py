"""What the broker carries: the queued jobs of the database, grouped by planned batch, as
``submit``, ``recover``, ``retry`` and the local executor send or render them."""

from __future__ import annotations

import dataclasses
import itertools
import operator
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from sdfarm.db.models import Job, JobStatus, Sweep


@dataclass(frozen=True)
class QueuedBatch:
    """Queued jobs of one planned batch, as ``recover`` and ``retry`` enqueue them."""

    sweep_id: int
    priority: int
    job_ids: tuple[int, ...]
    #: Some job here was claimed before and never finished: it may be the one that kills its
    #: worker, so it travels alone.
    suspect: bool

    def only(self, wanted: Callable[[int], bool]) -> QueuedBatch:
        """This batch with only the job ids ``wanted`` accepts (maybe none)."""
        return dataclasses.replace(self, job_ids=tuple(i for i in self.job_ids if wanted(i)))


def queued_batches(session: Session, sweep_ids: Sequence[int] | None = None, *,
                   executor: str | None = None,
                   job_ids: Sequence[int] | None = None) -> list[QueuedBatch]:
    """Every queued job, grouped by planned batch (suspects one per batch), highest sweep
    priority first, then oldest sweep, then render order. ``executor`` keeps only the sweeps
    it renders ("farm": what the broker may carry); ``job_ids`` only those jobs."""
    query = (select(Job.sweep_id, Job.batch_index, Job.id, Job.attempts, Sweep.priority)
             .join(Sweep, Sweep.id == Job.sweep_id)
             .where(Job.status == JobStatus.queued)
             .order_by(Sweep.priority.desc(), Job.sweep_id, Job.batch_index, Job.seq))
    if sweep_ids is not None:
        query = query.where(Job.sweep_id.in_(list(sweep_ids)))
    if executor is not None:
        query = query.where(Sweep.executor == executor)
    if job_ids is not None:
        query = query.where(Job.id.in_(list(job_ids)))
    out: list[QueuedBatch] = []
    fresh: dict[tuple[int, int], list[int]] = {}
    order: list[tuple[int, int, int]] = []
    for sweep_id, batch_index, job_id, attempts, priority in session.execute(query):
        if attempts:
            out.append(QueuedBatch(sweep_id, priority, (job_id,), suspect=True))
            continue
        key = (sweep_id, batch_index)
        if key not in fresh:
            fresh[key] = []
            order.append((sweep_id, batch_index, priority))
        fresh[key].append(job_id)
    batches = [QueuedBatch(s, p, tuple(fresh[(s, b)]), suspect=False) for s, b, p in order]
    # Suspects after the fresh batches of their sweep's priority: a poison job runs last.
    return sorted(batches + out, key=lambda b: (-b.priority, b.suspect, b.sweep_id))


def new_sweep_batches(session: Session, sweep_id: int) -> Iterator[QueuedBatch]:
    """The queued jobs of a sweep just recorded, batch by planned batch, in render order, read
    as they are sent (``submit``): a million jobs never sit in memory at once. A fresh sweep
    has no suspects (no job was claimed yet), so nothing needs sorting here."""
    priority = session.execute(select(Sweep.priority).where(Sweep.id == sweep_id)).scalar_one()
    rows = session.execute(
        select(Job.batch_index, Job.id)
        .where(Job.sweep_id == sweep_id, Job.status == JobStatus.queued)
        .order_by(Job.batch_index, Job.seq)
        .execution_options(yield_per=10_000))
    for _, group in itertools.groupby(rows, key=operator.itemgetter(0)):
        yield QueuedBatch(sweep_id, priority, tuple(job_id for _, job_id in group), suspect=False)
