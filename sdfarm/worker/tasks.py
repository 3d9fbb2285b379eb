"""The render task: decode the job ids, call the same ``render_batch`` the local executor
calls, map what escapes it. Everything else (claims, leases, attempts, outcomes) happens in
the database, inside ``render_batch``. A batch that ends its sweep writes the sweep's grid.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery
from celery.exceptions import Reject

from sdfarm.broker.app import RENDER_TASK
from sdfarm.config import Settings
from sdfarm.db.engine import DatabaseError
from sdfarm.grids.finish import write_grids_of_ended_sweeps
from sdfarm.worker.batch import render_batch
from sdfarm.worker.heartbeat import WorkerState
from sdfarm.worker.solo import WorkerStopping

log = logging.getLogger(__name__)

#: Seconds before a task whose database was unreachable is tried again.
DATABASE_RETRY_SECONDS = 10


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
