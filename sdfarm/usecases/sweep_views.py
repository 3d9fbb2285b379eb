"""Sweeps and jobs as the web page shows them: the list with live counts, rate and ETA, one
sweep with its job file, axes, workers and warnings, and one job with its infotext. Read-only;
the same queries as ``sdfarm status``, ``watch`` and ``show``."""

from __future__ import annotations

from sdfarm.config import Settings
from sdfarm.db.engine import session_factory
from sdfarm.db.farm_status import SweepProgress, latest_sweeps, sweep_progress
from sdfarm.db.jobs import get_job
from sdfarm.db.models import Sweep
from sdfarm.errors import JobNotFound, SweepNotFound
from sdfarm.metadata.a1111 import a1111_parameters
from sdfarm.usecases.history import job_details
from sdfarm.usecases.status import STATUSES

#: Sweeps the list shows unless asked for more.
SWEEPS_SHOWN = 50


def _progress_fields(p: SweepProgress) -> dict[str, object]:
    s = p.sweep
    eta = p.eta_seconds
    return {
        "id": s.id, "name": s.name,
        "created_at": s.created_at.isoformat(sep=" ", timespec="seconds"),
        "priority": s.priority, "total": s.total, "open": s.open,
        "counts": {k: s.counts[k] for k in STATUSES},
        "images_per_minute": round(p.per_minute, 2),
        "eta_seconds": None if eta is None else round(eta, 1),
        "busy_workers": p.busy_workers,
    }


def sweep_list(settings: Settings, limit: int = SWEEPS_SHOWN) -> list[dict[str, object]]:
    """The newest ``limit`` sweeps, newest first: counts per status, images/min and ETA."""
    with session_factory(settings.database_url)() as session:
        found = [sweep_progress(session, s.id) for s in latest_sweeps(session, limit)]
        out = []
        for p in found:
            if p is None:  # deleted between the two queries
                continue
            fields = _progress_fields(p)
            sweep = session.get(Sweep, p.sweep.id)
            fields.update(kind=sweep.kind, executor=sweep.executor,
                          has_axes=bool(sweep.axes))
            out.append(fields)
    return out


def sweep_detail(settings: Settings, sweep_id: int) -> dict[str, object]:
    """One sweep: its progress, job file text, axes, the workers on it, its plan warnings."""
    with session_factory(settings.database_url)() as session:
        sweep = session.get(Sweep, sweep_id)
        p = sweep_progress(session, sweep_id)
        if sweep is None or p is None:
            raise SweepNotFound(f"no sweep {sweep_id}; `sdfarm status` lists the sweeps")
        fields = _progress_fields(p)
        fields.update(
            kind=sweep.kind, executor=sweep.executor, executor_host=sweep.executor_host,
            executor_pid=sweep.executor_pid, job_file_path=sweep.job_file_path,
            job_file_text=sweep.job_file_text, output_dir=sweep.output_dir,
            sweep_seed=sweep.sweep_seed, axes=sweep.axes or {},
            rerun_of_job_id=sweep.rerun_of_job_id,
            plan_warnings=sweep.plan_warnings.splitlines(),
        )
    return fields


def job_view(settings: Settings, job_id: int) -> dict[str, object]:
    """Every recorded field of the job (as ``sdfarm show --json``), its A1111 infotext, and
    the sweep it was rerun from when its sweep is a rerun."""
    fields = job_details(settings, job_id)
    with session_factory(settings.database_url)() as session:
        job = get_job(session, job_id)
        if job is None:  # deleted in between
            raise JobNotFound(f"no job {job_id} in {settings.database_url}")
        fields["infotext"] = a1111_parameters(job.spec())
        fields["rerun_of_job_id"] = job.sweep.rerun_of_job_id
    return fields
