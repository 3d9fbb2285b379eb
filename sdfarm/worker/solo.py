"""The pool a farm worker runs its task in: Celery's solo pool (the task runs in the worker's
main thread, so the pipeline it loads stays for the next batch), made stoppable."""

from __future__ import annotations

from celery.concurrency.solo import TaskPool


class WorkerStopping(BaseException):
    """Raised into the running batch by a cold shutdown (SIGQUIT, a second Ctrl+C). Not an
    ``Exception``: nothing on the way may mistake it for a failed render. ``render_batch``
    gives its jobs back to the queue, Celery requeues the message."""


class SoloPool(TaskPool):
    """Celery's solo pool, whose tasks can be stopped.

    A cold shutdown cancels the running task with ``terminate_job``, which the solo pool
    lacks: its NotImplementedError was raised, from the signal handler, inside the render,
    and failed the batch's jobs. The task runs in this very thread, so stopping it means
    raising into it.
    """

    def terminate_job(self, pid: int, signal: int | None = None) -> None:
        raise WorkerStopping(f"worker shutting down (signal {signal})")
