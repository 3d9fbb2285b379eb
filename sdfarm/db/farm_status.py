"""Read-only views of the farm for ``sdfarm status`` and ``sdfarm watch``: sweeps with their
counts, a sweep's progress and rate, and the workers' last heartbeats."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import PurePath

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from sdfarm.db.models import Job, JobStatus, Sweep, utcnow

#: The window over which ``watch`` measures images per minute.
RATE_WINDOW = timedelta(seconds=60)


@dataclass(frozen=True)
class SweepCounts:
    id: int
    name: str
    created_at: datetime
    priority: int
    counts: Counter[str]

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def open(self) -> int:
        """Jobs still to finish (queued, running, or waiting for another sweep's job)."""
        return (self.counts[JobStatus.queued.value] + self.counts[JobStatus.running.value]
                + self.counts[JobStatus.waiting.value])


@dataclass(frozen=True)
class SweepProgress:
    sweep: SweepCounts
    #: Images finished per minute over the last minute (or since the sweep's first start).
    per_minute: float
    #: Workers holding a running job of this sweep right now.
    busy_workers: list[str]
    #: When the sweep's first job was claimed; None if none was.
    first_started: datetime | None

    @property
    def eta_seconds(self) -> float | None:
        if not self.sweep.open:
            return 0.0
        return self.sweep.open / self.per_minute * 60 if self.per_minute > 0 else None


def _counts(session: Session, sweep_ids: list[int]) -> dict[int, Counter[str]]:
    out: dict[int, Counter[str]] = {i: Counter() for i in sweep_ids}
    rows = session.execute(select(Job.sweep_id, Job.status, func.count())
                           .where(Job.sweep_id.in_(sweep_ids)).group_by(Job.sweep_id, Job.status))
    for sweep_id, status, n in rows:
        out[sweep_id][status.value] = n
    return out


def latest_sweeps(session: Session, limit: int = 10) -> list[SweepCounts]:
    sweeps = session.scalars(select(Sweep).order_by(Sweep.id.desc()).limit(limit)).all()
    counts = _counts(session, [s.id for s in sweeps])
    return [SweepCounts(s.id, s.name, s.created_at, s.priority, counts[s.id]) for s in sweeps]


def sweep_counts(session: Session, sweep_id: int) -> SweepCounts | None:
    sweep = session.get(Sweep, sweep_id)
    if sweep is None:
        return None
    return SweepCounts(sweep.id, sweep.name, sweep.created_at, sweep.priority,
                       _counts(session, [sweep_id])[sweep_id])


def sweep_progress(session: Session, sweep_id: int, now: datetime | None = None) -> SweepProgress | None:
    counts = sweep_counts(session, sweep_id)
    if counts is None:
        return None
    now = now or utcnow()
    first, last = session.execute(select(func.min(Job.started_at), func.max(Job.finished_at))
                                  .where(Job.sweep_id == sweep_id)).one()
    # A finished sweep's rate is over its run, not diluted by the time since it ended.
    end = last if (last and not counts.open) else now
    since = max(end - RATE_WINDOW, first) if first else end - RATE_WINDOW
    recent = session.scalar(select(func.count()).where(
        Job.sweep_id == sweep_id, Job.finished_at >= since,
        Job.status.in_((JobStatus.done, JobStatus.failed))))
    seconds = max((end - since).total_seconds(), 1.0)
    busy = session.scalars(select(Job.worker).distinct().where(
        Job.sweep_id == sweep_id, Job.status == JobStatus.running).order_by(Job.worker)).all()
    return SweepProgress(counts, recent / seconds * 60, [w for w in busy if w], first)


def output_folders(session: Session, job_ids: set[int]) -> dict[int, str]:
    """The folder each job's image goes to (a paused worker names the job whose write failed)."""
    if not job_ids:
        return {}
    rows = session.execute(select(Job.id, Job.output_path).where(Job.id.in_(job_ids)))
    return {job_id: str(PurePath(path).parent) for job_id, path in rows if path}
