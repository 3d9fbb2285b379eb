"""A sweep's grid, read from the database alone: its axes, and its jobs as pages of cells.

One page per combination of the dimensions that are not x or y: prompt, extra axes, z and
seed (when seeds are not an axis). On a page, x values are the columns and y values the rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sdfarm.db.models import Job, JobStatus
from sdfarm.db.sweeps import sweep_with_jobs
from sdfarm.scheduler.gridformat import GridAxis, read_grid_json
from sdfarm.spec import RenderSpec

if TYPE_CHECKING:  # the types of sessions: SQL itself stays in sdfarm.db
    from sqlalchemy.orm import Session


@dataclass(frozen=True)
class GridJob:
    """One job, as a grid cell needs it."""

    job_id: int
    status: str
    path: Path
    spec: RenderSpec
    prompt: int
    seed: int
    x: int
    y: int
    z: int | None
    extra: tuple[int, ...]

    @property
    def done(self) -> bool:
        return self.status == JobStatus.done.value

    @property
    def rendered(self) -> bool:
        """Done, and its image still on disk: what a cell shows rather than a placeholder."""
        return self.done and self.path.is_file()


@dataclass(frozen=True)
class GridPage:
    #: File stem: "grid", "grid-z2", "grid-p1-s3-z2", "grid-extra1-2-z1".
    name: str
    #: What is fixed on this page: z and extra labels, the seed, the prompt, and the negative
    #: prompt where pages differ by it.
    titles: tuple[str, ...]
    #: Column (x) and row (y) labels; one empty label when the sweep has no such axis.
    columns: tuple[str, ...]
    rows: tuple[str, ...]
    #: (column, row) -> job; a missing key is a cell with no job (cannot happen for a
    #: recorded sweep, but a partial grid is drawn all the same).
    cells: dict[tuple[int, int], GridJob]
    #: Size of the largest image planned on the page: every cell gets this box.
    cell_size: tuple[int, int]

    @property
    def size(self) -> int:
        """Cells on the page, with or without a job."""
        return len(self.columns) * len(self.rows)

    @property
    def done(self) -> int:
        """Cells that show their image (done, file on disk)."""
        return sum(1 for job in self.cells.values() if job.rendered)


@dataclass(frozen=True, slots=True)
class Grid:
    """A sweep's grid: its axes as stored at planning, and its jobs laid out page by page."""

    sweep_id: int
    name: str
    folder: Path
    axes: tuple[GridAxis, ...]
    #: In product order: prompt, extra axes, z, seed (see ``build_pages``).
    pages: tuple[GridPage, ...]
    #: Images the sweep planned, whether or not their rows are still there (``prune``).
    images: int

    @property
    def cells(self) -> int:
        """Cells on the pages drawn (a page whose every job was pruned is not drawn)."""
        return sum(p.size for p in self.pages)

    @property
    def done(self) -> int:
        return sum(p.done for p in self.pages)


def load_grid(session: Session, sweep_id: int) -> Grid:
    sweep, jobs = sweep_with_jobs(session, sweep_id)
    stored = read_grid_json(sweep.axes, sweep_id)
    pages = build_pages(stored.axes, [_grid_job(job) for job in jobs], prompts=stored.prompts,
                        seeds=stored.seeds)
    return Grid(sweep_id, sweep.name, Path(sweep.output_dir), stored.axes, pages,
                planned_images(stored.axes, prompts=stored.prompts, seeds=stored.seeds))


def planned_images(axes: tuple[GridAxis, ...], *, prompts: int, seeds: int) -> int:
    """Size of the sweep's product: every prompt, axis value and seed (0 seeds: a seed axis)."""
    total = max(prompts, 1) * max(seeds, 1)
    for axis in axes:
        total *= len(axis.labels)
    return total


def _grid_job(job: Job) -> GridJob:
    return GridJob(job_id=job.id, status=job.status.value, path=Path(job.output_path),
                   spec=job.spec(), prompt=job.grid_prompt or 0, seed=job.grid_seed or 0,
                   x=job.grid_x or 0, y=job.grid_y or 0, z=job.grid_z,
                   extra=tuple(job.grid_extra or ()))


def build_pages(axes: tuple[GridAxis, ...], jobs: list[GridJob], *, prompts: int,
                seeds: int) -> tuple[GridPage, ...]:
    """Group ``jobs`` into pages, in product order (prompt, extras, z, seed). Pure."""
    by_slot = {a.slot: a for a in axes}
    extras = [a for a in axes if a.slot.startswith("extra")]
    columns = by_slot["x"].labels if "x" in by_slot else ("",)
    rows = by_slot["y"].labels if "y" in by_slot else ("",)
    grouped: dict[tuple, list[GridJob]] = {}
    for job in jobs:
        key = (job.prompt, tuple(reversed(job.extra)), job.z if job.z is not None else 0, job.seed)
        grouped.setdefault(key, []).append(job)

    # The negative prompt titles a page when it is what tells pages apart: one per page, and
    # not the same on every page (within a page it varies only along an axis, which says so).
    negatives = [{j.spec.negative_prompt for j in members} for members in grouped.values()]
    titled_negative = (all(len(n) == 1 for n in negatives)
                       and len(set().union(*negatives)) > 1)
    pages = []
    for key in sorted(grouped):
        members = grouped[key]
        first = min(members, key=lambda j: (j.y, j.x))
        name = _page_name(first, extras, by_slot.get("z"), prompts, seeds)
        labels = [by_slot["z"].labels[first.z]] if "z" in by_slot and first.z is not None else []
        labels += [a.labels[i] for a, i in zip(extras, first.extra)]
        if seeds:
            labels.append(f"Seed: {first.spec.seed}")
        negative = (f"Negative prompt: {first.spec.negative_prompt or '(none)'}"
                    if titled_negative else "")
        titles = tuple(t for t in (" · ".join(labels), first.spec.prompt, negative) if t)
        cell_size = (max(j.spec.width for j in members), max(j.spec.height for j in members))
        pages.append(GridPage(name, titles, columns, rows, {(j.x, j.y): j for j in members},
                              cell_size))
    return tuple(pages)


def _page_name(job: GridJob, extras: list[GridAxis], z: GridAxis | None, prompts: int,
               seeds: int) -> str:
    # Only the dimensions with more than one value name a page; numbers count from 1.
    parts = [f"p{job.prompt + 1}"] if prompts > 1 else []
    parts += [f"{a.slot}-{i + 1}" for a, i in zip(extras, job.extra) if len(a.labels) > 1]
    if z is not None and len(z.labels) > 1 and job.z is not None:
        parts.append(f"z{job.z + 1}")
    if seeds > 1:
        parts.append(f"s{job.seed + 1}")
    return "-".join(["grid", *parts])

