"""``render_batch``: the one function that renders, called by the local executor and the
Celery task alike.

Claim the jobs in the database, render them in forward passes, write each PNG atomically with
its parameters, record the outcome. Writing and recording happen on a writer thread
(``sdfarm.worker.writer``) while the next pass renders. A failure fails the jobs of its pass and
the rest go on; a cancel stops the pass within one denoising step. A job claimed before whose worker never
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

from sdfarm.config import Settings
from sdfarm.db.engine import DatabaseError, disk_fault_of, make_room, session_factory
from sdfarm.db.jobs import (
    cancel_probe,
    canceled_among,
    claim_batch,
    claim_jobs,
    finish_job,
    note_held,
    release_claims,
    renew_lease,
)
from sdfarm.db.models import Job, JobStatus
from sdfarm.errors import DiskFault, RenderCanceled, one_line
from sdfarm.files import disk_fault
from sdfarm.worker.render import Renderer, make_renderer
from sdfarm.worker.writer import PassWriter, RenderedPass, renewing

if TYPE_CHECKING:  # the types of sessions: SQL itself stays in sdfarm.db
    from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger(__name__)


class ProgressSink(Protocol):
    def step(self, images: int) -> None:
        """One denoising step of a pass of ``images`` images."""

    def finished(self, done: int = 0, failed: int = 0, canceled: int = 0) -> None:
        """Jobs reached a final state (done ones once recorded, from the writer's thread)."""

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
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, *, done: Sequence[int] = (), failed: Sequence[int] = (),
            canceled: Sequence[int] = ()) -> None:
        """Record final states; the render's thread and the writer's both call it."""
        with self._lock:
            self.done.extend(done)
            self.failed.extend(failed)
            self.canceled.extend(canceled)


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
    outcome = BatchOutcome()
    claimed: set[int] = set()
    # Started before the claim, so nothing between the claim and the ``try`` can be
    # interrupted (a cold shutdown's signal lands wherever the main thread waits).
    writer = PassWriter(factory, token, device=renderer.device, threads=renderer.threads,
                        outcome=outcome, progress=progress)
    try:
        with factory.begin() as session:
            claim = claim_batch(session, job_ids, token=token, worker=worker,
                                lease_seconds=settings.lease_seconds,
                                max_attempts=settings.max_attempts, fresh_only=True)
        jobs, suspects = claim.jobs, claim.suspects
        claimed.update(j.id for j in jobs)
        if exact_pass:
            order = {job_id: n for n, job_id in enumerate(job_ids)}
            passes = [sorted(jobs, key=lambda j: order[j.id])] if jobs else []
        else:
            passes = _passes(jobs)
        calls = _Calls(token, factory, renderer, settings, progress, outcome, writer)
        for n, pass_jobs in enumerate(passes):
            later = [j.id for p in passes[n + 1:] for j in p]
            calls.render_pass(pass_jobs, later)
        for job_id in suspects:
            with factory.begin() as session:
                single = claim_jobs(session, [job_id], token=token, worker=worker,
                                    lease_seconds=settings.lease_seconds,
                                    max_attempts=settings.max_attempts)
            if single:
                claimed.add(job_id)
                calls.render_pass(single, [])
        _drain(writer, factory, token, settings)
    except BaseException as exc:
        # Stopped from outside (Ctrl+C, a worker's cold shutdown), by the database or by a
        # fault of the disk: what was rendered is still written and recorded, then what is
        # not done goes back to the queue now, without counting an attempt, instead of
        # waiting out its lease.
        try:
            _drain(writer, factory, token, settings)
        except BaseException as again:
            if again is not exc:  # the writer's own stop is what is being handled
                log.warning("could not record every rendered image before giving the jobs "
                            "back: %s", one_line(again))
        _give_back(factory, token, settings)
        fault = disk_fault_of(exc, settings.database_url)
        if fault is not None:
            raise fault from exc
        raise
    outcome.skipped = [i for i in job_ids if i not in claimed]
    return outcome


def _give_back(factory: sessionmaker[Session], token: str, settings: Settings) -> None:
    """Release what ``token`` holds. A SQLite file on a full disk may refuse even that: its
    write-ahead log is started over (reusing its space) and the release tried once more."""
    for attempt in range(2):
        try:
            with factory.begin() as session:
                release_claims(session, token)
            return
        except DatabaseError as failed:
            full = disk_fault_of(failed, settings.database_url) is not None
            if attempt or not full or not make_room(settings.database_url):
                # The jobs come back when their lease expires; the error the user sees is
                # the one that stopped the render.
                log.warning("could not give jobs back to the queue: %s", one_line(failed))
                return


def _drain(writer: PassWriter, factory: sessionmaker[Session], token: str,
           settings: Settings) -> None:
    """Wait until the writer has recorded every rendered pass, keeping the lease of what
    waits (no pass watch renews it now)."""
    def renew() -> None:
        try:
            with factory.begin() as session:
                renew_lease(session, token, settings.lease_seconds)
        except Exception:  # a database hiccup: the next wait retries
            log.warning("pass writer: lease renewal failed", exc_info=True)

    writer.close(every=settings.lease_seconds / 4, while_waiting=renewing(renew, writer))


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
    lease alive (also while a model loads, when no step runs, for at most
    SDFARM_FIRST_STEP_SECONDS). The step hook only reads an Event: a database query per step
    costs more than a whole step of a small model.

    The lease covers everything the call's token holds: the passes still to render, and those
    rendered that wait for the writer. Once the pass has made a first step, the lease is
    renewed only while steps keep coming: a render stuck on its device (a hung GPU) then lets
    its lease expire, and its jobs go to another worker, as a dead worker's do.

    The same poll looks at the jobs of the passes still to come (``later``): a canceled one is
    added to ``canceled_later`` and never rendered, so canceling a sweep skips the rest of the
    call at once instead of starting and stopping each of its passes.
    """

    def __init__(self, factory: sessionmaker[Session], token: str, job_ids: list[int],
                 settings: Settings, progress: ProgressSink, later: Sequence[int] = (),
                 canceled_later: set[int] | None = None) -> None:
        self.factory, self.token, self.job_ids = factory, token, job_ids
        self.settings, self.progress = settings, progress
        self.watched = [*job_ids, *later]
        self.canceled_later = canceled_later if canceled_later is not None else set()
        self.canceled = threading.Event()
        self.steps = 0
        self._stop = threading.Event()
        self._canceled = cancel_probe(factory.kw["bind"], self.watched)
        self._thread = threading.Thread(target=self._run, name="sdfarm-pass-watch", daemon=True)

    def __enter__(self) -> _PassWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        started = last_renew = time.monotonic()
        steps_then, loading_too_long = 0, False
        while not self._stop.wait(CANCEL_POLL_SECONDS):
            try:
                gone = self._canceled()
                if gone:
                    mine = gone.intersection(self.job_ids)
                    self.canceled_later.update(gone - mine)
                    if mine:
                        self.canceled.set()
                if (self.steps == 0 and not loading_too_long
                        and time.monotonic() - started > self.settings.first_step_seconds):
                    loading_too_long = True
                    self._give_up_loading()
                elif loading_too_long and self.steps:
                    # Late, but it runs: renewed again below (if no one took the jobs meanwhile).
                    loading_too_long = False
                    self._note(None)
                progressing = (self.steps == 0 and not loading_too_long) or self.steps > steps_then
                if progressing and time.monotonic() - last_renew > self.settings.lease_seconds / 4:
                    with self.factory.begin() as session:
                        renew_lease(session, self.token, self.settings.lease_seconds)
                    last_renew, steps_then = time.monotonic(), self.steps
            except Exception:  # a database hiccup must not kill the render; the next poll retries
                log.warning("pass watch: database check failed", exc_info=True)

    def _give_up_loading(self) -> None:
        """No step yet, past the bound: a device hung while loading holds its jobs no longer
        than a device hung mid-pass (the lease runs out unless steps start meanwhile)."""
        why = (f"no denoising step {self.settings.first_step_seconds:g} s after its pass "
               f"started (model load included; SDFARM_FIRST_STEP_SECONDS): the worker stopped "
               f"renewing the lease, so another worker takes the job once it expires")
        log.warning("pass %s: %s", self.job_ids, why)
        self._note(why)

    def _note(self, why: str | None) -> None:
        with self.factory.begin() as session:
            note_held(session, self.token, why)

    def step(self) -> None:
        """The denoising-step hook."""
        self.steps += 1
        self.progress.step(len(self.job_ids))
        if self.canceled.is_set():
            raise RenderCanceled(f"a job of pass {self.job_ids} was canceled")


@dataclass
class _Calls:
    """What every pass of one ``render_batch`` call shares."""

    token: str
    factory: sessionmaker[Session]
    renderer: Renderer
    settings: Settings
    progress: ProgressSink
    outcome: BatchOutcome
    writer: PassWriter
    #: Jobs of passes still to render that were canceled meanwhile (seen by a pass watch).
    canceled_later: set[int] = field(default_factory=set)

    def render_pass(self, jobs: list[Job], later: list[int]) -> None:
        """Render one pass and hand it to the writer; jobs canceled before it starts are
        counted canceled and left out."""
        self.writer.check()  # a pass that could not be written is not worth rendering
        gone = [j.id for j in jobs if j.id in self.canceled_later]
        if gone:
            self.outcome.add(canceled=gone)
            self.progress.finished(canceled=len(gone))
            jobs = [j for j in jobs if j.id not in self.canceled_later]
        _render_pass(jobs, later, self)


def _render_pass(jobs: list[Job], later: list[int], call: _Calls) -> None:
    token, factory, renderer = call.token, call.factory, call.renderer
    settings, progress, outcome = call.settings, call.progress, call.outcome
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
            with _PassWatch(factory, token, ids, settings, progress, later,
                            call.canceled_later) as watch:
                images = renderer.render([j.spec() for j in remaining],
                                         model_config=first.model_config,
                                         allow_pickle=first.sweep.allow_pickle, on_step=watch.step)
            model_hash = first.model_hash or renderer.model_hash(
                first.model, first.model_config, first.sweep.allow_pickle)
            loading = getattr(renderer, "load_seconds", 0.0) - loaded_before
            seconds = time.perf_counter() - started - loading
        except RenderCanceled:
            with factory() as session:
                gone = canceled_among(session, ids)
            outcome.add(canceled=sorted(gone))
            progress.finished(canceled=len(gone))
            # The others were only interrupted with it: render them again without it.
            remaining = [j for j in remaining if j.id not in gone]
            continue
        except Exception as exc:  # a broken model or input fails its pass, not the sweep
            name = disk_fault(exc)
            if name is not None:  # ...but a full disk (a cache written on load) is no job's
                where = getattr(exc, "filename", None)
                folder = str(Path(where).parent) if where else settings.output_dir
                raise DiskFault(str(folder), name, getattr(exc, "strerror", None) or str(exc),
                                what="files") from exc
            # Whole, however long: the advice is at the end of our messages.
            error = one_line(exc, limit=10_000)
            detail = traceback.format_exc(limit=8)
            failed = []
            with factory.begin() as session:
                for job in remaining:
                    if finish_job(session, job.id, token, JobStatus.failed,
                                  error=f"{error}\n{detail}"):
                        failed.append(job.id)
            outcome.add(failed=failed)
            progress.finished(failed=len(failed))
            return
        # Written and recorded (and reported finished) by the writer while the next pass renders.
        call.writer.put(RenderedPass(remaining, list(images), model_hash, seconds))
        return
