"""The worker registry: each ``sdfarm worker`` keeps its row in the ``workers`` table fresh
(heartbeat, what it renders, which model it holds) from a thread beside Celery's loop, and
runs the periodic recovery sweep from the same thread.

The thread runs while a batch renders, so ``sdfarm status`` sees a busy worker as alive; a
worker whose heartbeat is older than a few intervals died or hangs.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass

from sdfarm.config import Settings
from sdfarm.db.engine import session_factory
from sdfarm.db.workers import record_heartbeat
from sdfarm.db.workers import register_worker as register

log = logging.getLogger(__name__)

#: Least seconds between two heartbeats when the worker's state keeps changing.
MIN_BEAT_SECONDS = 1.0


@dataclass
class _Snapshot:
    busy: bool
    job_ids: tuple[int, ...]
    model: str | None
    done: int
    #: ``paused:ENOSPC`` and the like while the worker waits for its disk, else None.
    paused: str | None = None


class WorkerState:
    """What this worker process is doing, written by the task and read by the heartbeat.

    It is also the ``ProgressSink`` the task hands to ``render_batch``: ``started`` says which
    pass (jobs and model) began, ``finished`` counts outcomes.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._busy = False
        self._job_ids: tuple[int, ...] = ()
        self._model: str | None = None
        self._done = 0
        self._paused: str | None = None
        #: Set on every change, so the heartbeat writes it now rather than at its next tick.
        self.changed = threading.Event()

    def begin(self) -> None:
        with self._lock:
            self._busy = True
        self.changed.set()

    def end(self) -> None:
        with self._lock:
            self._busy = False
            self._job_ids = ()
        self.changed.set()

    def started(self, job_ids: list[int], model: str) -> None:
        with self._lock:
            self._job_ids = tuple(job_ids)
            self._model = model
        self.changed.set()

    def pause(self, errno_name: str, job_id: int) -> None:
        """The worker waits for its disk (``errno_name``, e.g. ``ENOSPC``) to take writes: its
        heartbeat says ``paused:ENOSPC`` and names the job whose write failed, whose folder
        ``sdfarm status`` shows."""
        with self._lock:
            self._paused = f"paused:{errno_name}"
            self._job_ids = (job_id,)
        self.changed.set()

    def resume(self) -> None:
        with self._lock:
            self._paused = None
            self._job_ids = ()
        self.changed.set()

    def step(self, images: int) -> None:
        pass

    def finished(self, done: int = 0, failed: int = 0, canceled: int = 0) -> None:
        with self._lock:
            self._done += done

    def snapshot(self) -> _Snapshot:
        with self._lock:
            return _Snapshot(self._busy, self._job_ids, self._model, self._done, self._paused)


def register_worker(settings: Settings, name: str, device: str | None) -> None:
    """Create or reset this worker's row as it starts (``sdfarm.db.workers.register_worker``)."""
    with session_factory(settings.database_url).begin() as session:
        register(session, name, host=socket.gethostname(), pid=os.getpid(), device=device,
                 heartbeat_seconds=settings.heartbeat_seconds)


def beat(settings: Settings, name: str, snap: _Snapshot, *, state: str | None = None) -> None:
    """Write one heartbeat with what the worker is doing now."""
    current = snap.job_ids[0] if snap.busy and snap.job_ids else None
    with session_factory(settings.database_url).begin() as session:
        record_heartbeat(session, name,
                         state=state or snap.paused or ("busy" if snap.busy else "idle"),
                         current_job_id=current, loaded_model=snap.model, jobs_done=snap.done)


class Heartbeat:
    """A daemon thread: a heartbeat every ``settings.heartbeat_seconds`` (and at once when
    the state changes), each followed by a call of ``lost``, and a call of ``recover`` every
    ``settings.recover_interval``."""

    def __init__(self, settings: Settings, name: str, state: WorkerState,
                 recover: Callable[[], None] | None = None,
                 lost: Callable[[float], object] | None = None) -> None:
        self.settings, self.name, self.state, self._recover = settings, name, state, recover
        #: Called after each heartbeat written, with the seconds the database has answered
        #: without a break: requeues the jobs of workers found gone (``LostWorkers``).
        self._lost = lost
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sdfarm-heartbeat", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread and mark the worker as stopped (a clean exit, not a death)."""
        self._stop.set()
        self.state.changed.set()
        self._thread.join(timeout=10)
        try:
            beat(self.settings, self.name, self.state.snapshot(), state="stopped")
        except Exception:
            log.warning("could not record worker %s as stopped", self.name, exc_info=True)

    def _run(self) -> None:
        import time

        next_recover = time.monotonic() + self.settings.recover_interval
        answering_since: float | None = None
        while not self._stop.is_set():
            self.state.changed.clear()
            try:
                beat(self.settings, self.name, self.state.snapshot())
                if answering_since is None:
                    answering_since = time.monotonic()
            except Exception:  # a database hiccup: the next beat tries again
                answering_since = None
                log.warning("heartbeat of %s failed", self.name, exc_info=True)
            if self._lost is not None and answering_since is not None:
                try:
                    self._lost(time.monotonic() - answering_since)
                except Exception:
                    log.warning("looking for lost workers failed", exc_info=True)
            if self._recover is not None and time.monotonic() >= next_recover:
                next_recover = time.monotonic() + self.settings.recover_interval
                try:
                    self._recover()
                except Exception:
                    log.warning("recovery sweep failed", exc_info=True)
            wait = min(self.settings.heartbeat_seconds,
                       max(0.0, next_recover - time.monotonic()) if self._recover else 1e9)
            if self.state.changed.wait(wait) and not self._stop.is_set():
                # A change is written soon, not at once: batches of a fraction of a second
                # would otherwise cost a database write each, for a display.
                self._stop.wait(min(MIN_BEAT_SECONDS, self.settings.heartbeat_seconds))
