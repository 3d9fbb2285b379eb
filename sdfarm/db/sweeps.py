"""Recording a planned sweep: one Sweep row and one Job row per image, in one transaction;
and what earlier sweeps offer it: done images to reuse (resume), measured seconds per step."""

from __future__ import annotations

import itertools
import json
import os
import re
import socket
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from operator import attrgetter
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import ARRAY, ColumnElement, String, any_, bindparam, func, insert, select
from sqlalchemy.orm import Session

from sdfarm.db.jobs import cancel_jobs
from sdfarm.db.models import Job, JobStatus, Sweep, spec_columns_for, utcnow
from sdfarm.errors import JobNotFound, SweepNotFound

if TYPE_CHECKING:
    from sdfarm.scheduler.expand import Cell
    from sdfarm.scheduler.plan import Plan


@dataclass(frozen=True)
class Executor:
    """Who renders a sweep: the farm's workers (``submit``), or this one process (``render``,
    ``rerun``), told apart by host and pid so ``recover`` knows when it is gone."""

    kind: str = "farm"
    host: str | None = None
    pid: int | None = None

    @classmethod
    def this_process(cls) -> Executor:
        return cls("local", socket.gethostname(), os.getpid())


FARM = Executor()


def slug(text: str, limit: int = 48) -> str:
    """A name safe in any file system: user text never reaches a path unsanitised."""
    s = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-._")
    return (s[:limit].rstrip("-._") or "sweep")


def image_name(seq: int, seed: int) -> str:
    return f"{seq:05d}-{seed}.png"


def grid_numbering(plan: Plan) -> Callable[[int, Cell | None, int], int]:
    """The number in each image's file name, from (render index, grid cell, index of its seed
    in the seed list): its position in
    the grid as the grid shows it (pages in order: prompt, extras, z, seed; then rows, then
    columns), so that a folder listing reads like the grid; the render index without a cell."""
    sizes = {a.slot: len(a.values) for a in plan.axes}
    extras = [sizes[a.slot] for a in plan.axes if a.slot.startswith("extra")]
    seeds = len(plan.seeds) or 1
    z, y, x = (sizes.get(slot, 1) for slot in ("z", "y", "x"))

    def number(index: int, cell: Cell | None, seed: int) -> int:
        if cell is None:
            return index
        n = cell.prompt
        for size, i in zip(reversed(extras), reversed(cell.extra)):  # the last one outermost
            n = n * size + i
        for size, i in ((z, cell.z), (seeds, seed), (y, cell.y), (x, cell.x)):
            n = n * size + (i or 0)
        return n

    return number


@dataclass(frozen=True)
class ReusedImage:
    """A done job whose image a new job with the same key takes instead of rendering."""

    #: The job that rendered the image (a chain of reuses leads back to it).
    job_id: int
    path: str
    sha256: str | None
    threads: int | None
    device: str | None


#: Keys per ``IN (...)`` query: well under every backend's bound-parameter limit.
_KEYS_PER_QUERY = 500
#: Keys per PostgreSQL query, as one array parameter.
_KEYS_PER_ARRAY = 10_000
#: Jobs built and inserted at a time: memory stays flat however large the sweep.
RECORD_CHUNK = 10_000


def key_chunks(session: Session, keys: Iterable[str]) -> Iterator[ColumnElement[bool]]:
    """``Job.key`` among ``keys``, as one condition per chunk of them: ``keys`` is read once,
    a million keys are never one list. PostgreSQL takes a chunk as one array parameter:
    compiling 500 bound parameters per query cost more than the queries did."""
    postgres = session.get_bind().dialect.name == "postgresql"
    size = _KEYS_PER_ARRAY if postgres else _KEYS_PER_QUERY
    it = iter(keys)
    while chunk := list(dict.fromkeys(itertools.islice(it, size))):
        yield (Job.key == any_(bindparam("keys", chunk, type_=ARRAY(String(32))))
               if postgres else Job.key.in_(chunk))


def reusable_images(session: Session, keys: Iterable[str]) -> dict[str, ReusedImage]:
    """For each key that has a done job whose file is still on disk: that image (newest first).
    ``keys`` is read once, in chunks: a million keys are never a list here."""
    found: dict[str, ReusedImage] = {}
    for wanted in key_chunks(session, keys):
        rows = session.execute(
            select(Job.key, Job.id, Job.reused_from_job_id, Job.output_path, Job.sha256,
                   Job.threads, Job.device)
            .where(wanted, Job.status == JobStatus.done)
            .order_by(Job.id.desc()))
        for key, job_id, source, path, sha, threads, device in rows:
            if key not in found and os.path.isfile(path):
                found[key] = ReusedImage(source or job_id, path, sha, threads, device)
    return found


#: Called for each reused image with (existing file, path in the new sweep's folder); returns
#: the path to record, or None when the image is gone (the job is then queued after all).
PlaceImage = Callable[[Path, Path], "Path | None"]


def record_plan(session: Session, plan: Plan, output_root: Path, *, kind: str = "render",
                rerun_of_job_id: int | None = None, priority: int = 0,
                reuse: Mapping[int, ReusedImage] | None = None,
                place: PlaceImage | None = None, executor: Executor = FARM,
                waiting: Mapping[int, int] | None = None) -> Sweep:
    """Insert the sweep and all its jobs; returns the flushed Sweep.

    The jobs are built and inserted :data:`RECORD_CHUNK` at a time (PostgreSQL: COPY), inside
    the caller's transaction: nobody sees a sweep before all its jobs are there, and a failure
    leaves nothing.

    ``reuse`` maps spec indices to earlier images: those jobs are recorded done, with
    ``reused_from_job_id``, and are in no batch (``batch_index`` -1); ``plan.batches`` must
    hold every other index (``Plan.without``). ``place`` puts a reused image in the new folder;
    without it the job points at the existing file. ``waiting`` maps spec indices to jobs of
    other sweeps rendering the same key now: those are recorded waiting for them
    (``sdfarm.db.waiting``), in their planned batch but not queued.
    """
    job = plan.job
    reuse = reuse or {}
    sweep = Sweep(name=job.name, kind=kind, job_file_path=job.path, job_file_text=job.text,
                  output_dir="", sweep_seed=job.sweep_seed, batch_size=job.batch_size,
                  allow_pickle=job.allow_pickle, priority=priority,
                  rerun_of_job_id=rerun_of_job_id, axes=plan.grid_json(),
                  executor=executor.kind, executor_host=executor.host,
                  executor_pid=executor.pid, plan_warnings="\n".join(job.warnings))
    session.add(sweep)
    session.flush()
    folder = output_root / f"{slug(job.name)}-{sweep.id}"
    sweep.output_dir = base = str(folder)
    if not plan.rows:
        return sweep
    now = utcnow()
    next_batch = len(plan.batches)
    names = list(spec_columns_for(plan.rows)(plan.rows[0]))  # the spec columns this sweep sets
    spec_values = attrgetter(*names)
    seed_at = names.index("seed")
    columns = [*_JOB_COLUMNS, *names]
    at = {name: n for n, name in enumerate(columns)}
    writer = _Writer(session, columns)
    stamp, extra = writer.value(now), writer.json
    keys, batch_of = iter(plan.key_list()), plan.batch_indices()
    seeds = plan.seeds or (None,)
    number = grid_numbering(plan)
    waiting = waiting or {}
    chunk: list[tuple[object, ...]] = []
    i = 0
    # Row by row, then seed by seed: what a row's images share is computed once.
    for r, spec in enumerate(plan.rows):
        values = list(spec_values(spec))
        model_config = plan.model_config_of(spec)
        cell = plan.row_cells[r] if plan.row_cells else None
        grid = ((cell.x, cell.y, cell.z, cell.prompt, extra(list(cell.extra) if cell.extra else None))
                if cell is not None else (None,) * 5)
        for s_index, seed in enumerate(seeds):
            if seed is not None:
                values[seed_at] = seed
            seed_of_image = values[seed_at]
            # Joined as text: a Path per row costs more than the rest of the row.
            path = f"{base}/{image_name(number(i, cell, s_index), seed_of_image)}"
            row = [sweep.id, i, next(keys), _QUEUED, model_config, next(batch_of), path, 0,
                   stamp, None, None, None, None, None, grid[0], grid[1], grid[2], grid[3],
                   s_index if cell is not None else None, grid[4], *values]
            if i in waiting:
                row[at["status"]], row[at["reused_from_job_id"]] = _WAITING, waiting[i]
            image = reuse.get(i)
            if image is not None:
                placed = place(Path(image.path), Path(path)) if place else Path(image.path)
                if placed is None:  # deleted since it was found: render it after all
                    row[at["batch_index"]] = next_batch
                    next_batch += 1
                else:
                    for name, value in (("status", _DONE), ("reused_from_job_id", image.job_id),
                                        ("output_path", str(placed)), ("sha256", image.sha256),
                                        ("threads", image.threads), ("device", image.device),
                                        ("finished_at", stamp)):
                        row[at[name]] = value
            chunk.append(tuple(row))
            i += 1
            if len(chunk) == RECORD_CHUNK:
                writer.write(chunk)
                chunk = []
    if chunk:
        writer.write(chunk)
    return sweep


#: The job columns a new sweep sets besides the spec's, in the order ``record_plan`` builds them.
_JOB_COLUMNS = ("sweep_id", "seq", "key", "status", "model_config", "batch_index", "output_path",
                "attempts", "created_at", "reused_from_job_id", "sha256", "threads", "device",
                "finished_at", "grid_x", "grid_y", "grid_z", "grid_prompt", "grid_seed",
                "grid_extra")
_QUEUED, _DONE, _WAITING = (JobStatus.queued.value, JobStatus.done.value,
                            JobStatus.waiting.value)


class _Writer:
    """A chunk of job rows into the table, as each backend takes them fastest: COPY on
    PostgreSQL (psycopg), the driver's executemany on SQLite (SQLAlchemy's per-row parameter
    processing cost as much as the insert), a Core executemany elsewhere. Always inside the
    session's transaction."""

    def __init__(self, session: Session, columns: list[str]) -> None:
        self.connection = session.connection()
        self.columns = columns
        dialect = self.connection.dialect
        self.kind = ("copy" if dialect.name == "postgresql" and dialect.driver == "psycopg"
                     else "sqlite" if dialect.name == "sqlite" else "core")

    def value(self, when: datetime) -> object:
        """A timestamp as this writer passes it."""
        # SQLAlchemy's own SQLite storage format, so that the ORM reads it back unchanged.
        return when.strftime("%Y-%m-%d %H:%M:%S.%f") if self.kind == "sqlite" else when

    def json(self, value: list[int] | None) -> object:
        return json.dumps(value) if value is not None and self.kind != "core" else value

    def write(self, rows: list[tuple[object, ...]]) -> None:
        names = ", ".join(self.columns)
        if self.kind == "copy":
            raw = self.connection.connection.driver_connection  # type: ignore[union-attr]
            with raw.cursor().copy(f"COPY jobs ({names}) FROM STDIN") as out:
                for row in rows:
                    out.write_row(row)
        elif self.kind == "sqlite":
            marks = ", ".join("?" * len(self.columns))
            self.connection.exec_driver_sql(f"INSERT INTO jobs ({names}) VALUES ({marks})", rows)
        else:
            self.connection.execute(insert(Job.__table__),
                                    [dict(zip(self.columns, row)) for row in rows])


def seconds_per_step(session: Session, groups: Iterable[tuple[str | None, int, int]]) -> dict[tuple[str | None, int, int], float]:
    """Measured render seconds per denoising step for each (model hash, width, height) that
    has rendered images (reused ones excluded: they cost nothing)."""
    wanted = set(groups)
    hashes = {h for h, _, _ in wanted if h}
    if not hashes:
        return {}
    rows = session.execute(
        select(Job.model_hash, Job.width, Job.height, func.sum(Job.render_seconds),
               func.sum(Job.steps))
        .where(Job.model_hash.in_(sorted(hashes)), Job.status == JobStatus.done,
               Job.render_seconds.is_not(None), Job.reused_from_job_id.is_(None))
        .group_by(Job.model_hash, Job.width, Job.height))
    return {(h, w, ht): seconds / steps for h, w, ht, seconds, steps in rows
            if (h, w, ht) in wanted and steps}


def queued_work(session: Session, sweep_id: int) -> tuple[int, int]:
    """Images left to render in the sweep, and their denoising steps."""
    count, steps = session.execute(
        select(func.count(), func.coalesce(func.sum(Job.steps), 0))
        .where(Job.sweep_id == sweep_id, Job.status == JobStatus.queued)).one()
    return count, steps


def require_sweep(session: Session, sweep_id: int | None) -> Sweep | None:
    """The sweep (``None`` for no id), or :class:`SweepNotFound` naming where to look."""
    if sweep_id is None:
        return None
    sweep = session.get(Sweep, sweep_id)
    if sweep is None:
        raise SweepNotFound(f"no sweep {sweep_id}; `sdfarm status` lists the sweeps")
    return sweep


def sweep_with_jobs(session: Session, sweep_id: int) -> tuple[Sweep, list[Job]]:
    """The sweep and its jobs in render order, or :class:`SweepNotFound`."""
    sweep = require_sweep(session, sweep_id)
    assert sweep is not None
    return sweep, sweep_jobs(session, sweep_id)


def sweep_jobs(session: Session, sweep_id: int) -> list[Job]:
    """The sweep's jobs in render order."""
    return list(session.scalars(select(Job).where(Job.sweep_id == sweep_id).order_by(Job.seq)))


def require_jobs(session: Session, job_ids: Iterable[int]) -> None:
    """:class:`JobNotFound` for the first id that has no job."""
    for job_id in job_ids:
        if session.get(Job, job_id) is None:
            raise JobNotFound(f"no job {job_id}; `sdfarm history` lists the jobs")


def interrupted_reason(how: str) -> str:
    """The error text of a local render's jobs left unrendered when it stopped."""
    return (f"interrupted: the `sdfarm render` that recorded this sweep stopped ({how}) before "
            "rendering it; `sdfarm render FILE` again renders what is left and reuses what "
            "is done")


@dataclass
class LeftByLocalRenders:
    """Unfinished jobs of local renders, as ``recover`` found them (sweep id -> jobs)."""

    #: Their process is gone (this host, pid not alive): now canceled as interrupted.
    interrupted: dict[int, int]
    #: Their process is alive, or on another host: left alone, never sent to the farm.
    running_elsewhere: dict[int, int]


def settle_local_renders(session: Session, host: str,
                         alive: Callable[[int], bool]) -> LeftByLocalRenders:
    """Cancel, as interrupted, the unfinished jobs of local renders of ``host`` whose process
    died (killed with -9: no chance to say so itself)."""
    rows = session.execute(
        select(Sweep.id, Sweep.executor_host, Sweep.executor_pid, func.count())
        .join(Job, Job.sweep_id == Sweep.id)
        .where(Sweep.executor == "local",
               Job.status.in_((JobStatus.queued, JobStatus.running)))
        .group_by(Sweep.id, Sweep.executor_host, Sweep.executor_pid)).all()
    left = LeftByLocalRenders({}, {})
    for sweep_id, sweep_host, pid, count in rows:
        if sweep_host == host and (pid is None or not alive(pid)):
            cancel_jobs(session, sweep_id=sweep_id,
                        reason=interrupted_reason(f"its process {pid} on {host} is gone"))
            left.interrupted[sweep_id] = count
        else:
            left.running_elsewhere[sweep_id] = count
    return left
