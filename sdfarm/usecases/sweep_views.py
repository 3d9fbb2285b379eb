"""What the web page shows of sweeps and jobs beyond ``sdfarm status``: each sweep's rate and
ETA beside its counts, one sweep's job file, axes and workers, and a job's A1111 infotext."""

from __future__ import annotations

from dataclasses import dataclass, field

from sdfarm import __version__
from sdfarm.config import Settings
from sdfarm.db.engine import session_factory
from sdfarm.db.farm_status import sweep_progress
from sdfarm.db.jobs import get_job
from sdfarm.db.sweeps import require_sweep
from sdfarm.errors import JobNotFound
from sdfarm.metadata.a1111 import a1111_parameters
from sdfarm.usecases.status import STATUSES, status_data


@dataclass(frozen=True)
class SweepRow:
    id: int
    name: str
    created_at: str
    total: int
    #: Jobs per status, every status of :data:`STATUSES` present.
    counts: dict[str, int]
    per_minute: float
    #: Seconds to the last job; ``None`` when nothing finished in the rate window yet.
    eta_seconds: float | None


@dataclass(frozen=True)
class SweepDetail:
    row: SweepRow
    kind: str
    executor: str
    job_file_path: str | None
    job_file_text: str | None
    output_dir: str
    rerun_of_job_id: int | None
    #: (parameter, labels) of each axis, in the file's order.
    axes: list[tuple[str, list[str]]]
    plan_warnings: list[str]
    busy_workers: list[str] = field(default_factory=list)


def sweep_rows(settings: Settings, limit: int = 20) -> list[SweepRow]:
    """The latest sweeps, newest first, with their rate and ETA (what ``watch`` prints)."""
    sweeps = status_data(settings, limit)["sweeps"]
    with session_factory(settings.database_url)() as session:
        progress = {s["id"]: sweep_progress(session, s["id"]) for s in sweeps}
    return [_row(s["id"], s["name"], s["created_at"], {k: s[k] for k in STATUSES},
                 progress[s["id"]]) for s in sweeps]


def _row(sweep_id, name, created_at, counts, progress) -> SweepRow:
    per_minute = round(progress.per_minute, 1) if progress is not None else 0.0
    eta = progress.eta_seconds if progress is not None else None
    return SweepRow(sweep_id, name, created_at, sum(counts.values()), counts, per_minute, eta)


def sweep_detail(settings: Settings, sweep_id: int) -> SweepDetail:
    """One sweep as its page shows it; ``SweepNotFound`` when there is none."""
    with session_factory(settings.database_url)() as session:
        sweep = require_sweep(session, sweep_id)
        progress = sweep_progress(session, sweep_id)
        counts = {k: progress.sweep.counts[k] for k in STATUSES} if progress else {}
        row = _row(sweep.id, sweep.name, sweep.created_at.isoformat(sep=" ", timespec="seconds"),
                   counts, progress)
        axes = [(a["param"], [str(label) for label in a["labels"]])
                for a in (sweep.axes or {}).get("axes", [])]
        return SweepDetail(row, sweep.kind, sweep.executor, sweep.job_file_path,
                           sweep.job_file_text, sweep.output_dir, sweep.rerun_of_job_id, axes,
                           sweep.plan_warnings.splitlines(),
                           progress.busy_workers if progress else [])


@dataclass(frozen=True)
class JobLinks:
    #: The A1111 ``parameters`` text the job's PNG carries, composed from its row.
    infotext: str
    #: The job its sweep renders again (``sdfarm rerun``), if it is a rerun.
    rerun_of_job_id: int | None


def job_links(settings: Settings, job_id: int) -> JobLinks:
    with session_factory(settings.database_url)() as session:
        job = get_job(session, job_id)
        if job is None:
            raise JobNotFound(f"no job {job_id} in {settings.database_url}")
        return JobLinks(a1111_parameters(job.spec(), version=f"sdfarm {__version__}"),
                        job.sweep.rerun_of_job_id)
