"""The grid viewer's data: a sweep's jobs laid out on the X, Y and page axes a user chose."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sdfarm.config import Settings
from sdfarm.db.engine import session_factory
from sdfarm.db.models import Job, JobStatus
from sdfarm.db.sweeps import sweep_with_jobs
from sdfarm.grids.model import GridJob
from sdfarm.grids.view import GridView, build_view, default_choice, view_axes
from sdfarm.scheduler.gridformat import read_grid_json

#: A URL's way of saying "the sweep's own axis here", as opposed to "" (no axis).
DEFAULT = "default"


@dataclass(frozen=True)
class SweepGrid:
    sweep_id: int
    name: str
    #: No job left to render (queued, running or waiting): the page stops polling.
    finished: bool
    view: GridView


def sweep_grid(settings: Settings, sweep_id: int, *, x: str | None = DEFAULT,
               y: str | None = DEFAULT, page: str | None = DEFAULT) -> SweepGrid:
    """Sweep ``sweep_id``'s grid with ``x``, ``y`` and ``page`` (axis names, ``None`` for no
    axis, :data:`DEFAULT` for the job file's x, y and z). :class:`SweepNotFound`,
    :class:`~sdfarm.grids.view.GridAxisError`."""
    with session_factory(settings.database_url)() as session:
        sweep, jobs = sweep_with_jobs(session, sweep_id)
        stored = read_grid_json(sweep.axes, sweep_id).axes if sweep.axes else ()
        grid_jobs = [_grid_job(job) for job in jobs]
        name = sweep.name
    axes = view_axes(stored, grid_jobs)
    defaults = default_choice(axes)
    x, y, page = (default if chosen == DEFAULT else chosen
                  for chosen, default in zip((x, y, page), defaults))
    view = build_view(axes, grid_jobs, x=x, y=y, page=page)
    finished = all(JobStatus(j.status).finished for j in grid_jobs)
    return SweepGrid(sweep_id, name, finished, view)


def _grid_job(job: Job) -> GridJob:
    return GridJob(job_id=job.id, status=job.status.value, path=Path(job.output_path),
                   spec=job.spec(), prompt=job.grid_prompt or 0, seed=job.grid_seed or 0,
                   x=job.grid_x or 0, y=job.grid_y or 0, z=job.grid_z,
                   extra=tuple(job.grid_extra or ()))
