"""Which sweep's grid is due, and how a grid image is marked as sdfarm's own: the guard that lets exactly one farm worker write a finished
sweep's grid, and write it again when a ``retry`` completes the sweep later.

A sweep's ``grid_written_at`` holds the newest ``finished_at`` of its jobs when its grid was
last written. A conditional UPDATE claims the writing: it sets the mark only while no job of
the sweep is queued or running and the mark is absent or older than the newest finish. The
database orders concurrent claims on the sweep's row, so of two workers that end the last two
jobs at once, one claims it; the mark compares only finish times with finish times, so the
clocks of different machines are never compared with each other's "now".
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import exists, func, or_, select, update
from sqlalchemy.orm import Session

from sdfarm.db.models import Job, JobStatus, Sweep

#: Jobs not ended: a waiting job ends when the other sweep's job it waits for does.
_OPEN = (JobStatus.queued, JobStatus.running, JobStatus.waiting)

#: PNG text chunk every grid image sdfarm writes carries ("sweep 3, page grid-z2"): ``index``
#: knows its own grids by it and skips them quietly (a grid has no generation parameters).
GRID_PNG_KEY = "sdfarm-grid"


def sweeps_with_axes(session: Session, job_ids: Iterable[int]) -> list[int]:
    """The sweeps of these jobs that have a grid (axes), in id order, and those of the jobs
    of other sweeps that took their images (a waiting job ends with its target)."""
    ids = list(job_ids)
    if not ids:
        return []
    theirs = or_(Job.id.in_(ids), Job.reused_from_job_id.in_(ids))
    rows = session.execute(select(Sweep.id, Sweep.axes).where(
        Sweep.id.in_(select(Job.sweep_id).where(theirs).distinct())).order_by(Sweep.id))
    # Tested in Python: a plain sweep's axes may be stored as JSON null rather than SQL NULL.
    return [sweep_id for sweep_id, axes in rows if axes]


def _newest_finish(sweep_id: int):
    return (select(func.max(Job.finished_at)).where(Job.sweep_id == sweep_id)
            .scalar_subquery())


def claim_grid(session: Session, sweep_id: int) -> datetime | None:
    """Claim the writing of the sweep's grid: the mark now set, or ``None`` when the sweep is
    still open or its grid already shows its newest finish (another worker's claim)."""
    open_jobs = exists().where(Job.sweep_id == sweep_id, Job.status.in_(_OPEN))
    # First the cheap test (an index probe) that every batch but a sweep's last one fails;
    # only then the update, which reads the finish time of every job of the sweep.
    if session.scalar(select(open_jobs)):
        return None
    newest = _newest_finish(sweep_id)
    claimed = session.execute(
        update(Sweep)
        .where(Sweep.id == sweep_id,
               ~open_jobs,
               newest.is_not(None),
               or_(Sweep.grid_written_at.is_(None), Sweep.grid_written_at < newest))
        .values(grid_written_at=newest)
        .execution_options(synchronize_session=False))
    if claimed.rowcount != 1:
        return None
    return session.scalar(select(Sweep.grid_written_at).where(Sweep.id == sweep_id))


def release_grid(session: Session, sweep_id: int, mark: datetime) -> None:
    """Undo a claim whose grid could not be written, so the next finish (or a retry) tries
    again; a newer claim meanwhile is left alone."""
    session.execute(update(Sweep).where(Sweep.id == sweep_id, Sweep.grid_written_at == mark)
                    .values(grid_written_at=None).execution_options(synchronize_session=False))


@dataclass(frozen=True)
class GridState:
    has_axes: bool
    folder: str
    #: The grid on disk shows every job's latest outcome.
    current: bool


def grid_state(session: Session, sweep_id: int) -> GridState | None:
    row = session.execute(select(Sweep.axes, Sweep.output_dir, Sweep.grid_written_at,
                                 _newest_finish(sweep_id)).where(Sweep.id == sweep_id)).first()
    if row is None:
        return None
    axes, folder, mark, newest = row
    return GridState(bool(axes), folder, mark is not None and newest is not None and mark >= newest)
