"""The worker registry: one ``workers`` row per ``sdfarm worker`` process, with its heartbeat,
what it renders and which model it holds. A worker whose heartbeat is older than a few
intervals died or hangs."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from sdfarm.db.models import FarmWorker, Job, JobStatus, utcnow
from sdfarm.errors import SdfarmError
from sdfarm.processes import pid_alive

#: A worker whose last heartbeat is older than this many intervals is shown as lost.
STALE_AFTER_INTERVALS = 3


def workers(session: Session) -> list[FarmWorker]:
    return list(session.scalars(select(FarmWorker).order_by(FarmWorker.name)))


def is_alive(worker: FarmWorker, heartbeat_seconds: float, now: datetime | None = None) -> bool:
    """A worker that did not stop cleanly and beat recently. (Each worker beats at its own
    SDFARM_HEARTBEAT_SECONDS; the reader's setting is the best guess it has.)"""
    now = now or utcnow()
    age = (now - worker.last_heartbeat).total_seconds()
    return worker.state != "stopped" and age <= STALE_AFTER_INTERVALS * heartbeat_seconds


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
