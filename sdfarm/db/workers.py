"""The worker registry: one ``workers`` row per ``sdfarm worker`` process, with its heartbeat,
what it renders and which model it holds. A worker whose heartbeat is older than a few
intervals died or hangs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from sdfarm.db.models import FarmWorker, Job, JobStatus, utcnow
from sdfarm.errors import SdfarmError
from sdfarm.processes import pid_alive

#: A worker whose last heartbeat is older than this many intervals is shown as lost.
STALE_AFTER_INTERVALS = 3
#: A lost worker of another machine (where no process table can tell) is taken for dead once
#: its heartbeat is this many intervals old: no live worker misses six beats in a row while
#: the database answers.
DEAD_AFTER_INTERVALS = 2 * STALE_AFTER_INTERVALS


def workers(session: Session) -> list[FarmWorker]:
    return list(session.scalars(select(FarmWorker).order_by(FarmWorker.name)))


def is_alive(worker: FarmWorker, heartbeat_seconds: float, now: datetime | None = None) -> bool:
    """A worker that did not stop cleanly and beat recently. (Each worker beats at its own
    SDFARM_HEARTBEAT_SECONDS; the reader's setting is the best guess it has.)"""
    now = now or utcnow()
    age = (now - worker.last_heartbeat).total_seconds()
    return worker.state != "stopped" and age <= STALE_AFTER_INTERVALS * heartbeat_seconds


@dataclass(frozen=True)
class GoneHolder:
    """Running jobs of worker ``name`` that no live process holds: every one when ``whole``
    (its process is gone; the row as it was read: ``pid``, ``started_at``,
    ``last_heartbeat``), else those claimed before ``started_at``, by an earlier process under
    that name (one restarts under its name only once the last one is gone)."""

    name: str
    pid: int
    started_at: datetime
    last_heartbeat: datetime
    whole: bool


def gone_holders(session: Session, *, host: str, heartbeat_seconds: float,
                 alive: Callable[[int], bool] = pid_alive, now: datetime | None = None,
                 watched_for: float | None = None) -> list[GoneHolder]:
    """The workers holding running jobs whose process is gone: its heartbeat stopped (older
    than STALE_AFTER_INTERVALS) and, if it ran on ``host``, its pid is gone from the process
    table, else its heartbeat is older than DEAD_AFTER_INTERVALS. ``watched_for``: how
    long the caller has seen the database answer without a break; a silence counts only if the
    caller watched it all (after a database outage every heartbeat is old). None: trusted.
    Whatever the heartbeats, jobs claimed under a name before its process started are gone."""
    now = now or utcnow()
    stale = STALE_AFTER_INTERVALS * heartbeat_seconds
    bound = DEAD_AFTER_INTERVALS * heartbeat_seconds

    def watched(seconds: float) -> bool:
        return watched_for is None or watched_for > seconds

    rows = session.execute(
        select(FarmWorker.name, FarmWorker.host, FarmWorker.pid, FarmWorker.started_at,
               FarmWorker.last_heartbeat, func.min(Job.started_at))
        .join(Job, Job.worker == FarmWorker.name)
        .where(Job.status == JobStatus.running)
        .group_by(FarmWorker.name, FarmWorker.host, FarmWorker.pid, FarmWorker.started_at,
                  FarmWorker.last_heartbeat)
        .order_by(FarmWorker.name)).all()
    out = []
    for name, row_host, pid, started_at, last_heartbeat, oldest_claim in rows:
        age = (now - last_heartbeat).total_seconds()
        if age <= stale:
            gone = False
        elif row_host == host:  # the process table knows; a stopped (SIGSTOP) one keeps its jobs
            # (watched too: containers that share a host name do not share their pids)
            gone = not alive(pid) and watched(stale)
        else:
            gone = age > bound and watched(bound)
        if gone or (oldest_claim is not None and oldest_claim < started_at):
            out.append(GoneHolder(name, pid, started_at, last_heartbeat, whole=gone))
    return out


def register_worker(session: Session, name: str, *, host: str, pid: int, device: str | None,
                    heartbeat_seconds: float) -> None:
    """Create or reset ``name``'s row as its process starts. Refuses a name a live worker on
    another machine uses: jobs, Celery and ``sdfarm status`` all tell workers apart by name."""
    now = utcnow()
    row = session.get(FarmWorker, name)
    if row is None:
        row = FarmWorker(name=name)
        session.add(row)
    elif _another_live_worker(row, host, pid, heartbeat_seconds, now):
        raise SdfarmError(
            f"worker name {name} is in use by pid {row.pid} on {row.host} (heartbeat "
            f"{(now - row.last_heartbeat).total_seconds():.0f} s ago); give this worker "
            "another --name (or SDFARM_HOST in docker compose)")
    row.host, row.pid, row.device, row.state = host, pid, device, "idle"
    row.started_at = row.last_heartbeat = now
    row.current_job_id = row.current_sweep_id = None
    row.loaded_model, row.jobs_done = None, 0


def _another_live_worker(row: FarmWorker, host: str, pid: int, heartbeat_seconds: float,
                         now: datetime) -> bool:
    if row.state == "stopped":
        return False
    if row.host == host:  # on this machine the process table knows better than a heartbeat
        return row.pid != pid and pid_alive(row.pid)
    return is_alive(row, heartbeat_seconds, now)




def record_heartbeat(session: Session, name: str, *, state: str, current_job_id: int | None,
                     loaded_model: str | None, jobs_done: int) -> None:
    """One heartbeat: now, and what the worker is doing."""
    sweep_id = None
    if current_job_id is not None:
        sweep_id = session.scalar(select(Job.sweep_id).where(Job.id == current_job_id))
    session.execute(
        update(FarmWorker).where(FarmWorker.name == name)
        .values(last_heartbeat=utcnow(), state=state, current_job_id=current_job_id,
                current_sweep_id=sweep_id, loaded_model=loaded_model, jobs_done=jobs_done))


def running_on(session: Session, job_ids: set[int]) -> dict[int, str]:
    """Of ``job_ids``, those running now, with the worker that holds each. A worker's row
    keeps the job it last reported; this says whether that is still its job."""
    if not job_ids:
        return {}
    rows = session.execute(select(Job.id, Job.worker).where(
        Job.id.in_(job_ids), Job.status == JobStatus.running))
    return {job_id: worker for job_id, worker in rows}
