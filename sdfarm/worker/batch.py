"""``render_batch``: the one function that renders, called by the local executor and the
Celery task alike.

Claim the jobs in the database, render them in forward passes, write each PNG atomically with
its parameters, record the outcome. A failure fails the jobs of its pass and the rest go on; a
cancel stops the pass within one denoising step. A job claimed before whose worker never
finished it (a "suspect": it may be what kills its worker) is claimed and rendered on its own,
after the others, so a poison job takes no neighbour down with it.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
import traceback
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from sdfarm import __version__
from sdfarm.config import Settings
from sdfarm.db.engine import session_factory
from sdfarm.db.jobs import (
    canceled_among,
    claim_batch,
    claim_jobs,
    finish_job,
    release_claims,
    renew_lease,
)
from sdfarm.db.models import Job, JobStatus
from sdfarm.errors import RenderCanceled, one_line
from sdfarm.metadata.a1111 import a1111_parameters, sdfarm_chunk
from sdfarm.worker.output import write_png
from sdfarm.worker.render import Renderer, make_renderer

if TYPE_CHECKING:  # the types of sessions: SQL itself stays in sdfarm.db
    from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger(__name__)


class ProgressSink(Protocol):
    def step(self, images: int) -> None:
        """One denoising step of a pass of ``images`` images."""

    def finished(self, done: int = 0, failed: int = 0, canceled: int = 0) -> None:
        """Jobs reached a final state."""

    # Optional: ``started(job_ids: list[int], model: str) -> None`` is called, when a sink
    # has it, as each forward pass starts (the farm worker's heartbeat reports it).


class _NoProgress:
    def step(self, images: int) -> None:
        pass

    def finished(self, done: int = 0, failed: int = 0, canceled: int = 0) -> None:
        pass


@dataclass
class BatchOutcome:
    done: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    canceled: list[int] = field(default_factory=list)
    #: Ids this call did not claim: done, canceled, or held by a live worker already.
    skipped: list[int] = field(default_factory=list)


_renderers: dict[Settings, Renderer] = {}


def process_renderer(settings: Settings) -> Renderer:
    """One renderer (and so one pipeline cache) per process and settings."""
    if settings not in _renderers:
        _renderers[settings] = make_renderer(settings)
    return _renderers[settings]


def default_worker_name() -> str:
    return f"local@{socket.gethostname()}"


def render_batch(job_ids: Sequence[int], settings: Settings, *, renderer: Renderer | None = None,
                 worker: str | None = None, progress: ProgressSink | None = None,
                 exact_pass: bool = False) -> BatchOutcome:
    """Render the given jobs. Safe to call twice with the same ids: what is done is skipped.

    ``exact_pass`` renders all the jobs as one forward pass in the given order (an exact
    rerun rebuilds the original pass this way).
    """
    factory = session_factory(settings.database_url)
    renderer = renderer or process_renderer(settings)
    progress = progress or _NoProgress()
    token = uuid.uuid4().hex
    worker = worker or default_worker_name()
    with factory.begin() as session:
        claim = claim_batch(session, job_ids, token=token, worker=worker,
                            lease_seconds=settings.lease_seconds,
                            max_attempts=settings.max_attempts, fresh_only=True)
    jobs, suspects = claim.jobs, claim.suspects
    outcome = BatchOutcome()
    claimed = {j.id for j in jobs}
    if exact_pass:
        order = {job_id: n for n, job_id in enumerate(job_ids)}
        passes = [sorted(jobs, key=lambda j: order[j.id])] if jobs else []
    else:
        passes = _passes(jobs)
    try:
        for pass_jobs in passes:
            _render_pass(pass_jobs, token, factory, renderer, settings, progress, outcome)
        for job_id in suspects:
            with factory.begin() as session:
                single = claim_jobs(session, [job_id], token=token, worker=worker,
                                    lease_seconds=settings.lease_seconds,
                                    max_attempts=settings.max_attempts)
            if single:
                claimed.add(job_id)
                _render_pass(single, token, factory, renderer, settings, progress, outcome)
    except BaseException:
        # Stopped from outside (Ctrl+C, a worker's cold shutdown): what is not done goes back
        # to the queue now, without counting an attempt, instead of waiting out its lease.
        with factory.begin() as session:
            release_claims(session, token)
        raise
    outcome.skipped = [i for i in job_ids if i not in claimed]
    return outcome


def _passes(jobs: list[Job]) -> list[list[Job]]:
    """The claimed jobs as forward passes: one per planned batch, as the planner cut them
    (``sdfarm.scheduler.batching``), in render order."""
    passes: dict[tuple[int, int], list[Job]] = {}
    for job in jobs:
        passes.setdefault((job.sweep_id, job.batch_index), []).append(job)
    return list(passes.values())


#: Seconds between a pass's checks for cancels. The check runs in a thread beside the pass,
#: so a denoising step costs only an Event lookup; a cancel stops the pass at the first step
#: after the check sees it.
CANCEL_POLL_SECONDS = 0.1


class _PassWatch:
    """Watches one forward pass from a thread: polls the database for cancels and keeps the
    lease alive (also while a model loads, when no step runs). The step hook only reads an
    Event: a database query per step costs more than a whole step of a small model.

    Once the pass has made a first step, the lease is renewed only while steps keep coming: a
    render stuck on its device (a hung GPU) then lets its lease expire, and its jobs go to
    another worker, as a dead worker's do.
    """

    def __init__(self, factory: sessionmaker[Session], token: str, job_ids: list[int],
                 settings: Settings, progress: ProgressSink) -> None:
        self.factory, self.token, self.job_ids = factory, token, job_ids
        self.settings, self.progress = settings, progress
        self.canceled = threading.Event()
        self.steps = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sdfarm-pass-watch", daemon=True)

    def __enter__(self) -> _PassWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        last_renew, steps_then = time.monotonic(), 0
        while not self._stop.wait(CANCEL_POLL_SECONDS):
            try:
                with self.factory() as session:
                    if canceled_among(session, self.job_ids):
                        self.canceled.set()
                progressing = self.steps == 0 or self.steps > steps_then
                if progressing and time.monotonic() - last_renew > self.settings.lease_seconds / 4:
                    with self.factory.begin() as session:
                        renew_lease(session, self.token, self.settings.lease_seconds)
                    last_renew, steps_then = time.monotonic(), self.steps
            except Exception:  # a database hiccup must not kill the render; the next poll retries
                log.warning("pass watch: database check failed", exc_info=True)

    def step(self) -> None:
        """The denoising-step hook."""
        self.steps += 1
        self.progress.step(len(self.job_ids))
        if self.canceled.is_set():
            raise RenderCanceled(f"a job of pass {self.job_ids} was canceled")


def _render_pass(jobs: list[Job], token: str, factory: sessionmaker[Session], renderer: Renderer,
                 settings: Settings, progress: ProgressSink, outcome: BatchOutcome) -> None:
    remaining = jobs
    while remaining:
        first = remaining[0]
        ids = [j.id for j in remaining]
        started = time.perf_counter()
        loaded_before = getattr(renderer, "load_seconds", 0.0)
        announce = getattr(progress, "started", None)
        if announce is not None:
            announce(ids, first.model)
        try:
            with _PassWatch(factory, token, ids, settings, progress) as watch:
                images = renderer.render([j.spec() for j in remaining],
                                         model_config=first.model_config,
                                         allow_pickle=first.sweep.allow_pickle, on_step=watch.step)
            model_hash = first.model_hash or renderer.model_hash(
                first.model, first.model_config, first.sweep.allow_pickle)
            loading = getattr(renderer, "load_seconds", 0.0) - loaded_before
            seconds = time.perf_counter() - started - loading
            _record_images(remaining, images, model_hash, seconds, token, factory, renderer, outcome)
        except RenderCanceled:
            with factory() as session:
                gone = canceled_among(session, ids)
            outcome.canceled.extend(sorted(gone))
            progress.finished(canceled=len(gone))
            # The others were only interrupted with it: render them again without it.
            remaining = [j for j in remaining if j.id not in gone]
            continue
        except Exception as exc:  # a broken model, input or disk fails its pass, not the sweep
            error = one_line(exc)
            detail = traceback.format_exc(limit=8)
            failed = []
            with factory.begin() as session:
                for job in remaining:
                    # Those recorded done before the error keep that state.
                    if finish_job(session, job.id, token, JobStatus.failed,
                                  error=f"{error}\n{detail}"):
                        failed.append(job.id)
            outcome.failed.extend(failed)
            progress.finished(failed=len(failed))
            return
        progress.finished(done=len(remaining))
        return


def _record_images(jobs: list[Job], images, model_hash: str | None, seconds: float, token: str,
                   factory: sessionmaker[Session], renderer: Renderer, outcome: BatchOutcome) -> None:
    pass_id = str(uuid.uuid4())
    results = []
    for index, (job, image) in enumerate(zip(jobs, images, strict=True)):
        spec = job.spec().replace(model_hash=model_hash)
        sha = write_png(image, Path(job.output_path),
                        parameters=a1111_parameters(spec, version=f"sdfarm {__version__}"),
                        sdfarm_json=sdfarm_chunk(spec, job_id=job.id, sweep_id=job.sweep_id,
                                                 model_config=job.model_config))
        results.append((job, index, sha))
    lost = []
    with factory.begin() as session:
        for job, index, sha in results:
            if finish_job(session, job.id, token, JobStatus.done, output_path=job.output_path,
                          sha256=sha, model_hash=model_hash, pass_id=pass_id, pass_index=index,
                          pass_size=len(jobs), threads=renderer.threads, device=renderer.device,
                          render_seconds=seconds / len(jobs), claim_token=None):
                outcome.done.append(job.id)
            else:
                lost.append(job)
    if lost:
        # Canceled after its last step: no image, as for any canceled job. (A job another
        # worker took over keeps the file: that worker writes the very same image.)
        with factory() as session:
            canceled = canceled_among(session, [j.id for j in lost])
        for job in lost:
            if job.id in canceled:
                Path(job.output_path).unlink(missing_ok=True)
