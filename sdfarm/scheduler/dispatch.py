"""Dispatch: record a plan in the database, then hand its batches to an executor.

The embedded default is :class:`LocalExecutor`, which calls the very same ``render_batch`` the
Celery task calls, in this process.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sdfarm.config import Settings
from sdfarm.db.engine import session_factory
from sdfarm.db.models import JobStatus
from sdfarm.db.sweeps import batch_job_ids, record_plan, reusable_images
from sdfarm.scheduler.plan import Plan
from sdfarm.scheduler.reuse import place_image


def record(settings: Settings, plan: Plan, *, kind: str = "render",
           rerun_of_job_id: int | None = None, priority: int = 0, force: bool = False) -> int:
    """One transaction: the sweep and every job, or nothing. Returns the sweep id.

    Resume: a job whose key already has a done image on disk is recorded done, its image
    linked into the new sweep's folder, and is not queued; the rest are batched again. A
    rerun, or ``force``, renders every job.
    """
    factory = session_factory(settings.database_url)
    with factory.begin() as session:
        reuse = {}
        if not force and kind != "rerun":
            keys = plan.key_list()
            found = reusable_images(session, keys)
            reuse = {i: found[key] for i, key in enumerate(keys) if key in found}
        if reuse:
            plan = plan.without(reuse)
        sweep = record_plan(session, plan, settings.output_dir, kind=kind,
                            rerun_of_job_id=rerun_of_job_id, priority=priority, reuse=reuse,
                            place=place_image)
        return sweep.id


def queued_batches(settings: Settings, sweep_id: int) -> list[list[int]]:
    with session_factory(settings.database_url)() as session:
        return batch_job_ids(session, sweep_id, (JobStatus.queued,))


@dataclass
class LocalResult:
    done: int = 0
    failed: int = 0
    canceled: int = 0
    failed_ids: list[int] = field(default_factory=list)


class LocalExecutor:
    """Renders batches one after another in this process."""

    def __init__(self, settings: Settings, progress=None) -> None:
        self.settings = settings
        self.progress = progress
        self.result = LocalResult()

    def submit(self, job_ids: list[int], *, exact_pass: bool = False) -> None:
        from sdfarm.worker.batch import render_batch  # torch is imported only to render

        outcome = render_batch(job_ids, self.settings, progress=self.progress, exact_pass=exact_pass)
        self.result.done += len(outcome.done)
        self.result.failed += len(outcome.failed)
        self.result.canceled += len(outcome.canceled)
        self.result.failed_ids.extend(outcome.failed)

    def join(self) -> LocalResult:
        return self.result


def render_sweep_locally(settings: Settings, sweep_id: int, progress=None) -> LocalResult:
    executor = LocalExecutor(settings, progress)
    for batch in queued_batches(settings, sweep_id):
        executor.submit(batch)
    return executor.join()
