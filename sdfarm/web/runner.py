"""Where a sweep submitted from the page renders: on the farm (recorded, then enqueued, as
``sdfarm submit``), or here, in this server process, as ``sdfarm render`` would (the embedded
mode: one machine, no broker).

Local sweeps render one at a time in ONE background thread, in the order submitted: a second
GPU user in the same process would only halve each one's memory. The thread starts with the
first local sweep and stops with the app; canceling a sweep from the page marks its jobs in
the database, which the local executor's cancel probe reads within a denoising step.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Literal

from fastapi import FastAPI

from sdfarm.config import Settings
from sdfarm.db.engine import session_factory
from sdfarm.db.jobs import cancel_jobs
from sdfarm.db.sweeps import interrupted_reason
from sdfarm.scheduler.plan import Plan
from sdfarm.usecases import farm
from sdfarm.usecases.render import RecordedSweep, record_for_local_render, render_recorded

log = logging.getLogger(__name__)

Where = Literal["farm", "here"]
#: The reason recorded on a local sweep's unrendered jobs when the server stops under it.
STOPPED = "sdfarm serve stopped"


class LocalRunner:
    """The server's one local render thread and its queue of recorded sweeps."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._queue: queue.Queue[RecordedSweep | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._pending: list[int] = []  # sweep ids queued or rendering, oldest first
        self._stopping = False

    def add(self, sweep: RecordedSweep) -> None:
        with self._lock:
            if self._stopping:
                raise RuntimeError("the server is stopping")
            self._pending.append(sweep.sweep_id)
            if self._thread is None:  # lazily: a server that never renders here holds no thread
                self._thread = threading.Thread(target=self._run, name="sdfarm-local-render",
                                                daemon=True)
                self._thread.start()
        self._queue.put(sweep)

    @property
    def pending(self) -> list[int]:
        """The local sweeps not finished yet, the one rendering first."""
        with self._lock:
            return list(self._pending)

    def _run(self) -> None:
        while (sweep := self._queue.get()) is not None:
            try:
                if not self._stopping:
                    render_recorded(self.settings, sweep)
            except Exception:  # one sweep's failure must not stop the queue
                log.exception("local render of sweep %s failed", sweep.sweep_id)
            finally:
                with self._lock:
                    self._pending.remove(sweep.sweep_id)

    def stop(self, timeout: float = 30.0) -> None:
        """Interrupt the sweep rendering and those waiting (recorded as interrupted, so that
        ``sdfarm render`` of the same file resumes them), then end the thread."""
        with self._lock:
            self._stopping = True
            pending, thread = list(self._pending), self._thread
        if pending:
            with session_factory(self.settings.database_url).begin() as session:
                for sweep_id in pending:
                    cancel_jobs(session, sweep_id=sweep_id, reason=interrupted_reason(STOPPED))
        if thread is not None:
            self._queue.put(None)
            thread.join(timeout)


def runner_of(app: FastAPI) -> LocalRunner:
    runner = getattr(app.state, "runner", None)
    if runner is None:
        runner = app.state.runner = LocalRunner(app.state.settings)
    return runner


def launch(app: FastAPI, plan: Plan, *, where: Where, priority: int = 0,
           force: bool = False) -> int:
    """Record ``plan`` as a sweep and start it; returns its id. ``farm``: enqueued for the
    workers (``sdfarm submit``); ``here``: rendered by this server's local thread."""
    settings: Settings = app.state.settings
    if where == "farm":
        return farm.submit(settings, plan, priority=priority, force=force).sweep_id
    if where != "here":
        raise ValueError(f"where must be farm or here, not {where!r}")
    sweep = record_for_local_render(settings, plan, force=force)
    runner_of(app).add(sweep)
    return sweep.sweep_id
