"""Jobs that wait for an identical job of another farm sweep instead of rendering it again.

The same job file submitted twice (two people, a script run twice, a retry of a submit that
was slow to answer) would otherwise render every image twice: resume reuses only *done*
images. So ``submit`` links a job whose key is already queued or running in another farm
sweep to that job (status ``waiting``, ``reused_from_job_id``), and the link is settled when
that job ends:

- done: the waiting job takes its image (placed in its own sweep's folder) and is done;
- failed: it fails with the reason (``sdfarm retry`` renders it itself);
- canceled, or its image gone: it is queued to render itself, and sent to the broker.

The writer settles the jobs waiting for what it just recorded done; ``recover`` (and every
worker's periodic recovery) settles the rest.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select, text, update
from sqlalchemy.orm import Session, aliased

from sdfarm.db.models import Job, JobStatus, Sweep, utcnow
from sdfarm.db.sweeps import key_chunks

#: Puts an existing image at a path of the waiting job's sweep; None when it is gone.
PlaceImage = Callable[[Path, Path], "Path | None"]


def serialize_submits(session: Session) -> None:
    """Make concurrent submits record one after another, so that the second sees the first's
    jobs. SQLite's write transactions already do (BEGIN IMMEDIATE); PostgreSQL takes a
    transaction-scoped advisory lock."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(7301455)"))  # "sdfarm submit"


def jobs_in_flight(session: Session, keys: Iterable[str]) -> dict[str, int]:
    """For each key a farm sweep is rendering now (queued or running): the job rendering it
    (oldest first). A key that is itself waiting points at what it waits for."""
    found: dict[str, int] = {}
    for wanted in key_chunks(session, keys):
        rows = session.execute(
            select(Job.key, Job.id, Job.status, Job.reused_from_job_id)
            .join(Sweep, Sweep.id == Job.sweep_id)
            .where(wanted,
                   Job.status.in_((JobStatus.queued, JobStatus.running, JobStatus.waiting)),
                   Sweep.executor == "farm")
            .order_by(Job.id))
        for key, job_id, status, target in rows:
            if key not in found:
                found[key] = target if status == JobStatus.waiting and target else job_id
    return found


@dataclass
class Settled:
    done: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    #: Queued to render themselves: what they waited for was canceled or lost its image.
    #: The caller sends them to the broker (by sweep).
    requeued: dict[int, list[int]] = field(default_factory=dict)


def settle_waiting(session: Session, place: PlaceImage,
                   targets: Sequence[int] | None = None) -> Settled:
    """Settle every waiting job whose target has ended (or only those waiting for
    ``targets``). Each update restates ``status = 'waiting'``: a waiting job canceled
    meanwhile stays canceled."""
    target = aliased(Job)
    query = (select(Job.id, Job.sweep_id, Job.output_path, target.id, target.status,
                    target.output_path, target.sha256, target.threads, target.device,
                    target.error)
             .join(target, target.id == Job.reused_from_job_id, isouter=True)
             .where(Job.status == JobStatus.waiting)
             .order_by(Job.id))
    if targets is not None:
        if not targets:
            return Settled()
        query = query.where(Job.reused_from_job_id.in_(list(targets)))
    settled = Settled()
    now = utcnow()
    for (job_id, sweep_id, dest, target_id, status, path, sha, threads, device,
         error) in session.execute(query).all():
        if status in (JobStatus.queued, JobStatus.running, JobStatus.waiting):
            continue  # still on its way
        values: dict[str, object]
        if status == JobStatus.done and (placed := place(Path(path), Path(dest))) is not None:
            values = dict(status=JobStatus.done, output_path=str(placed), sha256=sha,
                          threads=threads, device=device, finished_at=now,
                          reused_from_job_id=target_id)
            outcome = settled.done
        elif status == JobStatus.failed:
            first = (error or "").strip().splitlines()[0] if error else "no reason recorded"
            values = dict(status=JobStatus.failed, finished_at=now,
                          error=f"job {target_id} of another sweep, which rendered this "
                                f"image's key for it, failed: {first}")
            outcome = settled.failed
        else:  # canceled, deleted, or done with its file gone: render it here after all
            values = dict(status=JobStatus.queued, reused_from_job_id=None)
            outcome = settled.requeued.setdefault(sweep_id, [])
        changed = session.execute(
            update(Job).where(Job.id == job_id, Job.status == JobStatus.waiting)
            .values(**values).execution_options(synchronize_session=False)).rowcount
        if changed:
            outcome.append(job_id)
    return settled
