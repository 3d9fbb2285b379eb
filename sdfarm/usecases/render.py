"""Planning and rendering a job file here: ``sdfarm plan`` (what would happen, no torch) and
``sdfarm render`` (record the sweep, render it in this process, write its grids)."""

from __future__ import annotations

import dataclasses
import logging
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sdfarm.config import Settings
from sdfarm.db.engine import database_exists, session_factory
from sdfarm.db.farm_status import sweep_counts
from sdfarm.db.jobs import cancel_jobs
from sdfarm.db.sweeps import (
    Executor,
    interrupted_reason,
    queued_work,
    require_sweep,
    reusable_images,
    seconds_per_step,
)
from sdfarm.scheduler.forecast import Forecast, forecast, rate_groups
from sdfarm.scheduler.jobfile import JobFile, load_job_file
from sdfarm.scheduler.plan import Plan
from sdfarm.scheduler.prepare import model_refs, plan_job, resolve_model
from sdfarm.usecases.local import LocalResult, render_sweep_locally
from sdfarm.usecases.prompt_checks import prompt_warnings
from sdfarm.usecases.record import record

log = logging.getLogger(__name__)

if TYPE_CHECKING:  # Pillow is imported only when a grid is drawn
    from sdfarm.grids.write import GridReport


def load_plan(settings: Settings, job_file: str | Path, *, build_builtins: bool = False) -> Plan:
    """Validate ``job_file`` and expand it. ``build_builtins`` builds the built-in models it
    names first, so that their hashes enter every job's key (rendering needs them anyway)."""
    return expand_job(settings, load_job_file(job_file), build_builtins=build_builtins)


def expand_job(settings: Settings, job: JobFile, *, build_builtins: bool = False) -> Plan:
    """:func:`load_plan` for a job file already read (the web page's pasted text)."""
    job, mref = resolve_model(job, settings.model_dir)
    for warning in job.warnings:  # plan, render and submit all start here
        print(f"Warning: {warning}", file=sys.stderr)
    if build_builtins:
        from sdfarm.worker.builtin import ensure_builtin

        for ref in model_refs(job, mref, settings.model_dir):
            if ref.kind == "builtin":
                ensure_builtin(ref.ref.removeprefix("builtin:"), settings.model_dir)
    plan = plan_job(job, mref, settings.model_dir, settings.lora_folder,
                    settings.embedding_folder)
    warned = tuple(prompt_warnings(plan, settings.model_dir))
    for warning in warned:
        print(f"Warning: {warning}", file=sys.stderr)
    if not warned:
        return plan
    # The sweep records every warning (``watch`` says them again): the job file's and these.
    job = dataclasses.replace(plan.job, warnings=(*plan.job.warnings, *warned))
    return dataclasses.replace(plan, job=job)


def plan_outlook(settings: Settings, plan: Plan, *, force: bool = False) -> Forecast:
    """What rendering ``plan`` against this database would do. The database is only read, and
    not created when absent."""
    reused: set[int] = set()
    rates: dict[tuple[str | None, int, int], float] = {}
    if database_exists(settings.database_url):
        with session_factory(settings.database_url)() as session:
            if not force:
                keys = plan.key_list()
                found = reusable_images(session, keys)
                reused = {i for i, key in enumerate(keys) if key in found}
            rates = seconds_per_step(session, rate_groups(plan))
    return forecast(plan, reused, rates)


@dataclass(frozen=True)
class RecordedSweep:
    sweep_id: int
    images: int
    #: Images left to render, and their denoising steps; the rest reuse earlier images.
    to_render: int
    steps_to_render: int
    folder: str
    has_axes: bool

    @property
    def reused(self) -> int:
        return self.images - self.to_render


def record_for_local_render(settings: Settings, plan: Plan, *, force: bool = False) -> RecordedSweep:
    sweep_id = record(settings, plan, force=force, executor=Executor.this_process())
    with session_factory(settings.database_url)() as session:
        todo, steps = queued_work(session, sweep_id)
        folder = require_sweep(session, sweep_id).output_dir
    return RecordedSweep(sweep_id, plan.images, todo, steps, folder, bool(plan.axes))


def status_counts(settings: Settings, sweep_id: int) -> Counter[str]:
    """The sweep's jobs per status."""
    with session_factory(settings.database_url)() as session:
        counts = sweep_counts(session, sweep_id)
        return counts.counts if counts is not None else Counter()


@dataclass(frozen=True)
class LocalRender:
    result: LocalResult
    #: The grids written, for a sweep with axes.
    grids: GridReport | None


def render_recorded(settings: Settings, sweep: RecordedSweep, progress=None) -> LocalRender:
    """Render the sweep's queued jobs here, then write its grids when it has axes.

    Stopped before the end (Ctrl+C, SIGTERM, an error of this machine), the jobs it did not
    render are canceled as interrupted before the exception goes on: they are this process's
    own, and no farm worker may pick them up. Rendering the file again reuses the done ones.
    """
    try:
        result = render_sweep_locally(settings, sweep.sweep_id, progress)
    except BaseException as exc:
        how = getattr(exc, "signal_name", None) or type(exc).__name__
        try:
            with session_factory(settings.database_url).begin() as session:
                cancel_jobs(session, sweep_id=sweep.sweep_id, reason=interrupted_reason(how))
        except Exception:  # the database itself may be what failed: recover settles them
            log.warning("could not mark sweep %s's unrendered jobs interrupted", sweep.sweep_id,
                        exc_info=True)
        raise
    grids = None
    if sweep.has_axes:
        from sdfarm.grids.write import write_grids

        grids = write_grids(settings, sweep.sweep_id)
    return LocalRender(result, grids)
