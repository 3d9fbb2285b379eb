"""The pass writer: a thread beside the render that encodes, writes and records each rendered
pass while the next one denoises, so nothing in the render's line waits on the disk or on
the result transaction.

One writer per ``render_batch`` call. Passes wait in a bounded queue (:data:`QUEUED_PASSES`):
memory stays bounded, and a slow disk holds the render back instead of piling up images.
Each pass is written whole (every PNG flushed to the disk) before one transaction records it,
so a job the database says is done always has its file; a crash loses only what was never
recorded, and that goes back to the queue like any unfinished job.

A write or record error fails that pass's jobs, not the others'. An :class:`ImageFailed` in
place of an image fails its job alone. An error that leaves even the failure unrecorded (the
database gone) stops the writer and is raised in the render's thread at its next hand-over.
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
from typing import TYPE_CHECKING, Protocol

from PIL import Image

from sdfarm import __version__
from sdfarm.db.jobs import canceled_among, finish_job
from sdfarm.db.models import Job, JobStatus
from sdfarm.db.waiting import settle_waiting
from sdfarm.errors import ImageFailed, one_line
from sdfarm.files import place_image
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
        self._thread = threading.Thread(target=self._run, name="sdfarm-pass-writer", daemon=True)
        self._thread.start()

    def put(self, rendered: RenderedPass) -> None:
        """Hand a pass over; blocks while :data:`QUEUED_PASSES` passes wait."""
        self._check()
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
        self._check()

    def _check(self) -> None:
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
                except BaseException as exc:  # reported to the render's thread
                    log.error("pass writer stopped: %s", one_line(exc), exc_info=True)
                    self._broken = exc
            self.handled += 1

    def _handle(self, rendered: RenderedPass) -> None:
        try:
            self._record(rendered)
        except Exception as exc:  # a full disk, an unencodable image: this pass fails
            error = f"{one_line(exc)}\n{traceback.format_exc(limit=8)}"
            failed = []
            with self.factory.begin() as session:
                for job in rendered.jobs:
                    # Those recorded before the error keep their state.
                    if finish_job(session, job.id, self.token, JobStatus.failed, error=error):
                        failed.append(job.id)
            self.outcome.add(failed=failed)
            self.progress.finished(failed=len(failed))

    def _record(self, rendered: RenderedPass) -> None:
        jobs, model_hash = rendered.jobs, rendered.model_hash
        written = []
        for index, (job, image) in enumerate(zip(jobs, rendered.images, strict=True)):
            if isinstance(image, ImageFailed):
                written.append((job, index, None, one_line(image)))
                continue
            spec = job.spec().replace(model_hash=model_hash)
            sha = write_png(image, Path(job.output_path),
                            parameters=a1111_parameters(spec, version=f"sdfarm {__version__}"),
                            sdfarm_json=sdfarm_chunk(spec, job_id=job.id, sweep_id=job.sweep_id,
                                                     model_config=job.model_config))
            written.append((job, index, sha, None))
        pass_id = str(uuid.uuid4())
        per_image = rendered.seconds / len(jobs)
        done, failed, lost = [], [], []
        with self.factory.begin() as session:
            for job, index, sha, error in written:
                if error is not None:
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
