"""One farm worker process: one device, one Celery consumer (solo pool: the task runs in this
very process, so the pipeline loaded by the first batch stays for the next), a heartbeat, and
a recovery sweep at start and every SDFARM_RECOVER_INTERVAL seconds.

``sdfarm worker`` pins the GPU (``CUDA_VISIBLE_DEVICES``) before anything imports torch, then
calls :func:`run_worker`.
"""

from __future__ import annotations

import logging
import socket

from sdfarm.broker.app import make_app
from sdfarm.broker.queue import LostWorkers, recover, try_lock
from sdfarm.config import Settings
from sdfarm.errors import BrokerUnavailable
from sdfarm.worker.batch import process_renderer
from sdfarm.worker.heartbeat import Heartbeat, WorkerState, register_worker
from sdfarm.worker.solo import SoloPool
from sdfarm.worker.tasks import register_tasks

log = logging.getLogger(__name__)


def node_name(gpu: int | None, host: str | None = None) -> str:
    """``gpu<N>@<host>``, the name jobs record as their worker; ``cpu@<host>`` without a GPU."""
    host = host or socket.gethostname()
    return f"gpu{gpu}@{host}" if gpu is not None else f"cpu@{host}"


def run_worker(settings: Settings, name: str, *, loglevel: str = "INFO") -> int:
    """Serve render tasks until told to stop; returns the exit status."""
    # The renderer first: a worker that cannot render (no CUDA, bad SDFARM_RENDERER) must
    # fail here, not take messages from the queue and fail each of them.
    renderer = process_renderer(settings)
    app = make_app(settings)
    state = WorkerState()
    register_tasks(app, settings, state, name)
    register_worker(settings, name, renderer.device)

    def periodic_recovery() -> None:
        # Of all the workers due for a sweep, the one that takes the lock does it.
        if try_lock(settings, app, "recover-lock", settings.recover_interval * 0.9):
            report = recover(settings, app, thorough=False, watched_for=0.0)
            if report.requeued or report.failed or report.enqueued_jobs:
                log.warning("recovery: %s", report)

    try:
        # Several workers starting together need only one of them to read the queue.
        if try_lock(settings, app, "recover-lock", settings.recover_interval * 0.9):
            log.info("recovery at start: %s",
                     recover(settings, app, thorough=True, watched_for=0.0))
    except BrokerUnavailable as exc:  # Celery waits for the broker below; the sweep retries
        log.warning("no recovery at start: %s", exc)
    heartbeat = Heartbeat(settings, name, state, recover=periodic_recovery,
                          lost=LostWorkers(settings, app))
    heartbeat.start()
    worker = app.Worker(hostname=name, pool_cls=SoloPool, concurrency=1, queues=[settings.queue],
                        loglevel=loglevel, without_mingle=True, without_gossip=True)
    try:
        worker.start()
    finally:
        heartbeat.stop()
    return worker.exitcode or 0
