"""The pass writer: a thread beside the render that encodes, writes and records each rendered
pass while the next one denoises, so nothing in the render's line waits on the disk or on
the result transaction.

One writer per ``render_batch`` call. Passes wait in a bounded queue (:data:`QUEUED_PASSES`):
memory stays bounded, and a slow disk holds the render back instead of piling up images.
Each pass is written whole (every PNG flushed to the disk) before one transaction records it,
so a job the database says is done always has its file; a crash loses only what was never
recorded, and that goes back to the queue like any unfinished job.

Each image has its own outcome: a write error of one image (a folder squatting on its name)
fails its job alone, and an :class:`ImageFailed` in place of an image likewise. A fault of the
disk itself (:class:`DiskFault`: full, read-only, failing) is no job's fault: the images
written before it are recorded done, and the writer stops with the fault, which the render's
thread raises at its next hand-over, so that the rest is given back to the queue without an
attempt. A database that cannot record a pass stops the writer the same way; when it is a
SQLite file on a full disk, the images it could not record are removed (no row says they are
done, and the space they took is what the database needs to give the jobs back).
"""

from __future__ import annotations

import logging
import queue
import threading
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, Protocol

from PIL import Image

from sdfarm import __version__
from sdfarm.db.engine import DatabaseError, disk_fault_of
from sdfarm.db.jobs import canceled_among, finish_job
from sdfarm.db.models import Job, JobStatus
from sdfarm.db.waiting import settle_waiting
from sdfarm.errors import DiskFault, ImageFailed, one_line
from sdfarm.files import place_image, remove_stale_temporaries
from sdfarm.metadata.a1111 import a1111_parameters, sdfarm_chunk
from sdfarm.worker.output import write_png

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger(__name__)

#: Rendered passes that may wait for the writer; the render blocks on the next one. Two keep
#: the writer busy while a pass renders, and hold at most two passes' images in memory.
QUEUED_PASSES = 2


@dataclass
class RenderedPass:
    """One forward pass's output, handed from the render to the writer."""

    jobs: list[Job]
    #: One per job, in pass order: the image, or why it came out unusable.
    images: list[Image.Image | ImageFailed]
    model_hash: str | None
    #: Render time of the whole pass (model loading left out).
    seconds: float


class Outcomes(Protocol):
    """Where the writer reports final states (``BatchOutcome``)."""

    def add(self, *, done: list[int] = ..., failed: list[int] = ...,
            canceled: list[int] = ...) -> None: ...


class _Progress(Protocol):
    def finished(self, done: int = 0, failed: int = 0, canceled: int = 0) -> None: ...


_STOP = object()


class PassWriter:
    """The writer thread of one ``render_batch`` call and the queue that feeds it."""

    def __init__(self, factory: sessionmaker[Session], token: str, *, device: str,
                 threads: int, outcome: Outcomes, progress: _Progress) -> None:
        self.factory, self.token = factory, token
        self.device, self.threads = device, threads
        self.outcome, self.progress = outcome, progress
        #: Passes handled so far (written, failed or dropped): what lease renewal watches.
        self.handled = 0
        self._queue: queue.Queue[object] = queue.Queue(maxsize=QUEUED_PASSES)
        self._broken: BaseException | None = None
        self._stopping = False
        self._swept: set[Path] = set()
        self._thread = threading.Thread(target=self._run, name="sdfarm-pass-writer", daemon=True)
        self._thread.start()

    def put(self, rendered: RenderedPass) -> None:
        """Hand a pass over; blocks while :data:`QUEUED_PASSES` passes wait."""
        self.check()
        self._queue.put(rendered)

    def close(self, *, every: float, while_waiting: Callable[[], None]) -> None:
        """Write what is queued, then stop the thread. ``while_waiting`` runs every ``every``
        seconds meanwhile (it renews the lease of the jobs still to be recorded). Called
        again after an interrupt, it goes on waiting."""
        if not self._stopping:
            self._queue.put(_STOP)
            self._stopping = True
        while True:
            self._thread.join(every)
            if not self._thread.is_alive():
                break
            while_waiting()
        self.check()

    def check(self) -> None:
        """Raise what stopped the writer, if anything did (the render need not render a pass
        that cannot be written)."""
        if self._broken is not None:
            # As it is (a DatabaseError stays one, for the task's retry), in the render's thread.
            raise self._broken

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            assert isinstance(item, RenderedPass)
            if self._broken is None:  # once broken, the rest only drains: the render stops
                try:
                    self._handle(item)
                except DiskFault as fault:  # the machine's, not a bug: one line in the log
                    log.info("pass writer stopped: %s", fault)
                    self._broken = fault
                except BaseException as exc:  # reported to the render's thread
                    log.error("pass writer stopped: %s", one_line(exc), exc_info=True)
                    self._broken = exc
            self.handled += 1

    def _handle(self, rendered: RenderedPass) -> None:
        written, fault = self._write(rendered)
        try:
            self._record(rendered, written)
        except DatabaseError as exc:
            full = disk_fault_of(exc, str(self.factory.kw["bind"].url))
            if full is None:
                raise
            for item in written:
                if item.sha is not None:
                    Path(item.job.output_path).unlink(missing_ok=True)
            raise full from exc
        if fault is not None:
            raise fault

    def _sweep_temporaries(self, folder: Path) -> None:
        """Once per folder: remove the temporary files that writers killed mid-write left."""
        if folder in self._swept:
            return
        self._swept.add(folder)
        try:
            for path in remove_stale_temporaries(folder):
                log.info("removed %s, left by a write that never finished", path)
        except OSError as exc:  # an unreadable folder: the write itself will say more
            log.warning("could not look for stale temporary files in %s: %s", folder, exc)

    def _write(self, rendered: RenderedPass) -> tuple[list[_Written], DiskFault | None]:
        """Write the pass's images in order, each on its own; stops at a fault of the disk,
        returning it with what was written before it."""
        written = []
        for index, (job, image) in enumerate(zip(rendered.jobs, rendered.images, strict=True)):
            if isinstance(image, ImageFailed):
                written.append(_Written(job, index, None, one_line(image)))
                continue
            path = Path(job.output_path)
            self._sweep_temporaries(path.parent)
            spec = job.spec().replace(model_hash=rendered.model_hash)
            try:
                sha = write_png(image, path,
                                parameters=a1111_parameters(spec, version=f"sdfarm {__version__}"),
                                sdfarm_json=sdfarm_chunk(spec, job_id=job.id, sweep_id=job.sweep_id,
                                                         model_config=job.model_config))
            except DiskFault as fault:
                return written, fault
            except Exception as exc:  # this image's own: a name taken by a folder, say
                error = f"{one_line(exc)}\n{traceback.format_exc(limit=8)}"
                written.append(_Written(job, index, None, error))
                continue
            written.append(_Written(job, index, sha, None))
        return written, None

    def _record(self, rendered: RenderedPass, written: list[_Written]) -> None:
        """One transaction: every image written is done, every failed one failed."""
        jobs, model_hash = rendered.jobs, rendered.model_hash
        pass_id = str(uuid.uuid4())
        per_image = rendered.seconds / len(jobs)
        done, failed, lost = [], [], []
        with self.factory.begin() as session:
            for job, index, sha, error in written:
                if sha is None:
                    ok = finish_job(session, job.id, self.token, JobStatus.failed, error=error,
                                    model_hash=model_hash)
                    (failed if ok else lost).append(job)
                    continue
                ok = finish_job(session, job.id, self.token, JobStatus.done,
                                output_path=job.output_path, sha256=sha, model_hash=model_hash,
                                pass_id=pass_id, pass_index=index, pass_size=len(jobs),
                                threads=self.threads, device=self.device,
                                render_seconds=per_image, claim_token=None)
                (done if ok else lost).append(job)
        self.outcome.add(done=[j.id for j in done], failed=[j.id for j in failed])
        self.progress.finished(done=len(done), failed=len(failed))
        if done:
            # Jobs of other sweeps that waited for these images take them now.
            try:
                with self.factory.begin() as session:
                    settle_waiting(session, place_image, targets=[j.id for j in done])
            except Exception:  # recovery settles them later; these jobs are recorded
                log.warning("could not hand the images to the jobs waiting for them",
                            exc_info=True)
        if lost:
            # Canceled after its last step: no image, as for any canceled job. (A job another
            # worker took over keeps the file: that worker writes the very same image.)
            with self.factory() as session:
                canceled = canceled_among(session, [j.id for j in lost])
            for job in lost:
                if job.id in canceled:
                    Path(job.output_path).unlink(missing_ok=True)


class _Written(NamedTuple):
    """One image's outcome on the disk: its file's sha256, or why its job fails."""

    job: Job
    index: int
    sha: str | None
    error: str | None


def renewing(renew: Callable[[], None], writer: PassWriter) -> Callable[[], None]:
    """A ``while_waiting`` for :meth:`PassWriter.close` that renews the lease only while the
    writer gets on: a writer stuck on a dead disk lets its jobs' lease expire, as a hung
    render does, and another worker takes them."""
    seen = [-1]  # the first wait always renews

    def check() -> None:
        if writer.handled != seen[0]:
            seen[0] = writer.handled
            renew()

    return check
