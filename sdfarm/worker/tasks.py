"""The render task: decode the job ids, call the same ``render_batch`` the local executor
calls, map what escapes it. Everything else (claims, leases, attempts, outcomes) happens in
the database, inside ``render_batch``. A batch that ends its sweep writes the sweep's grid.

A fault of the worker's disk (:class:`DiskFault`: full, read-only, failing) is no job's: the
jobs are back in the queue, their message is sent again for another worker, and this worker
pauses inside the task (one task at a time, nothing prefetched: it takes no other message)
until a probe write in the folder succeeds, its heartbeat saying ``paused:ENOSPC``.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from celery import Celery
from celery.exceptions import Reject

from sdfarm.broker.app import RENDER_TASK, render_queue
from sdfarm.config import Settings
from sdfarm.db.engine import DatabaseError
from sdfarm.errors import DiskFault
from sdfarm.files import probe_write
from sdfarm.grids.finish import write_grids_of_ended_sweeps
from sdfarm.worker.batch import render_batch
from sdfarm.worker.heartbeat import WorkerState
from sdfarm.worker.solo import WorkerStopping

log = logging.getLogger(__name__)

#: Seconds before a task whose database was unreachable is tried again.
DATABASE_RETRY_SECONDS = 10

#: Bytes a paused worker's probe writes before it resumes (at least the image that failed):
#: room for more than one image, so that it does not resume into a disk full again at once.
PROBE_BYTES = 1 << 20


class BadMessage(ValueError):
    """A message whose arguments are not a list of job ids."""


def decode_job_ids(value: Any) -> list[int]:
    """The job ids a message carries: a JSON list of integers, nothing else."""
    if not isinstance(value, list) or not value:
        raise BadMessage(f"expected a non-empty list of job ids, got {value!r:.200}")
    if not all(isinstance(i, int) and not isinstance(i, bool) and i > 0 for i in value):
        raise BadMessage(f"job ids must be positive integers, got {value!r:.200}")
    return value


def register_tasks(app: Celery, settings: Settings, state: WorkerState | None = None,
                   name: str | None = None) -> None:
    """Add the render task to ``app``, bound to this worker's settings, state and ``name`` (what
    its jobs record; Celery's own node name turns ``w1`` into ``celery@w1``)."""
    state = state or WorkerState()

    @app.task(name=RENDER_TASK, bind=True, acks_late=True, reject_on_worker_lost=True)
    def render(self, job_ids: Any) -> dict[str, list[int]] | None:
        try:
            ids = decode_job_ids(job_ids)
        except BadMessage as exc:
            # Acked and dropped: redelivering it would fail the same way forever.
            log.error("dropping message %s: %s", self.request.id, exc)
            return None
        state.begin()
        try:
            outcome = render_batch(ids, settings, worker=name or self.request.hostname,
                                   progress=state)
        except WorkerStopping:
            # render_batch gave the jobs back; the message goes back to the queue with them.
            raise Reject("worker shutting down", requeue=True) from None
        except DiskFault as fault:
            # render_batch gave the jobs back without an attempt; failing or rejecting the
            # next messages the same way would turn the queue into failures.
            log.error("pausing: %s", fault)
            resent = _send_again(self, ids, settings)
            try:
                _pause_until_writable(fault, state, ids[0], settings)
            except WorkerStopping:
                raise Reject("worker shutting down", requeue=not resent) from None
            if not resent:
                raise Reject("disk fault", requeue=True) from None
            return None
        except DatabaseError as exc:
            # The jobs are as the database last saw them: queued ones stay queued, claimed
            # ones come back when their lease expires. Try the message again later.
            log.warning("database unreachable for jobs %s: %s", ids, exc)
            raise self.retry(countdown=DATABASE_RETRY_SECONDS, max_retries=None) from None
        finally:
            state.end()
        write_grids_of_ended_sweeps(settings, ids)
        return {"done": outcome.done, "failed": outcome.failed, "canceled": outcome.canceled,
                "skipped": outcome.skipped}


def _send_again(task: Any, ids: list[int], settings: Settings) -> bool:
    """Send the jobs' message again, at its priority, for a worker whose disk works (handling
    it twice is harmless: the database says who renders what). False if the broker refused."""
    priority = (task.request.delivery_info or {}).get("priority")
    try:
        task.app.send_task(RENDER_TASK, args=[ids], queue=render_queue(settings),
                           priority=priority)
    except Exception as exc:  # the broker is down too: this message goes back when we resume
        log.warning("could not send jobs %s again: %s", ids, exc)
        return False
    return True


def _stopping() -> bool:
    from celery.worker import state as worker_state

    # Set to the exit status on a warm or cold shutdown: 0 for a clean one, so not a truth test.
    return worker_state.should_stop is not None or worker_state.should_terminate is not None


def _pause_until_writable(fault: DiskFault, state: WorkerState, job_id: int,
                          settings: Settings) -> None:
    """Block until ``fault.folder`` takes a probe write again (every heartbeat interval), or
    the worker is told to stop; the heartbeat says paused meanwhile."""
    state.pause(fault.errno_name, job_id)
    size = max(fault.needed, PROBE_BYTES)
    next_probe = time.monotonic() + settings.heartbeat_seconds
    try:
        while not _stopping():
            if time.monotonic() >= next_probe:
                try:
                    probe_write(Path(fault.folder), size)
                except OSError as exc:
                    log.debug("still paused, %s: %s", fault.folder, exc)
                    next_probe = time.monotonic() + settings.heartbeat_seconds
                else:
                    log.warning("resuming: %s takes writes again", fault.folder)
                    return
            time.sleep(min(0.2, settings.heartbeat_seconds))
    finally:
        state.resume()
