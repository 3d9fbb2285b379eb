"""The farm as ``sdfarm status`` and ``sdfarm watch`` show it: sweeps with their counts, one
sweep's progress and rate, and the workers with their last heartbeat."""

from __future__ import annotations

from sdfarm.config import Settings
from sdfarm.db.engine import session_factory
from sdfarm.db.farm_status import SweepProgress, latest_sweeps, output_folders, sweep_progress
from sdfarm.db.models import JobStatus, utcnow
from sdfarm.db.workers import is_alive, running_on, workers
from sdfarm.errors import DiskFault, SweepNotFound

#: The job states, in the order tables show them.
STATUSES = tuple(s.value for s in JobStatus)


def sweep_progress_of(settings: Settings, sweep_id: int) -> SweepProgress:
    with session_factory(settings.database_url)() as session:
        p = sweep_progress(session, sweep_id)
    if p is None:
        raise SweepNotFound(f"no sweep {sweep_id}; `sdfarm status` lists the sweeps")
    return p


def plan_warnings_of(settings: Settings, sweep_id: int) -> list[str]:
    """What planning warned about the sweep, as it was printed then (``watch`` repeats it)."""
    from sdfarm.db.models import Sweep

    with session_factory(settings.database_url)() as session:
        sweep = session.get(Sweep, sweep_id)
        return sweep.plan_warnings.splitlines() if sweep is not None else []


def alive_workers(settings: Settings) -> int:
    with session_factory(settings.database_url)() as session:
        return sum(is_alive(w, settings.heartbeat_seconds) for w in workers(session))


def shown_state(state: str, folder: str | None) -> str:
    """A worker's state as ``status`` shows it: a paused one (``paused:ENOSPC``, recorded in
    few characters) as ``paused: disk full (/its/folder)``."""
    kind, paused, errno_name = state.partition(":")
    if kind != "paused" or not paused:
        return state
    reason = DiskFault.REASONS.get(errno_name, errno_name)
    return f"paused: {reason}" + (f" ({folder})" if folder else "")


def status_data(settings: Settings, limit: int = 10) -> dict[str, list[dict[str, object]]]:
    now = utcnow()
    with session_factory(settings.database_url)() as session:
        sweeps = latest_sweeps(session, limit)
        rows = workers(session)
        # A lost worker's row still names the job it had; once that job is done, or another
        # worker took it over, it is no longer the worker's current job.
        running = running_on(session, {w.current_job_id for w in rows if w.current_job_id})
        folders = output_folders(session, {w.current_job_id for w in rows
                                           if w.current_job_id and w.state.startswith("paused:")})
        worker_list = [{
            "name": w.name, "host": w.host, "pid": w.pid, "device": w.device,
            "state": shown_state(w.state, folders.get(w.current_job_id or 0))
            if is_alive(w, settings.heartbeat_seconds, now) or w.state == "stopped" else "lost",
            "last_heartbeat": w.last_heartbeat.isoformat(sep=" ", timespec="seconds"),
            "seconds_since_heartbeat": round((now - w.last_heartbeat).total_seconds(), 1),
            **({"current_job_id": w.current_job_id, "current_sweep_id": w.current_sweep_id}
               if running.get(w.current_job_id) == w.name  # type: ignore[arg-type]
               else {"current_job_id": None, "current_sweep_id": None}),
            "loaded_model": w.loaded_model, "jobs_done": w.jobs_done,
        } for w in rows]
    sweep_list = [{
        "id": s.id, "name": s.name, "created_at": s.created_at.isoformat(sep=" ", timespec="seconds"),
        "priority": s.priority, "total": s.total, **{k: s.counts[k] for k in STATUSES},
    } for s in sweeps]
    return {"sweeps": sweep_list, "workers": worker_list}
