"""The embedded executor: render a recorded sweep's batches here, in this process, with the
very same ``render_batch`` the farm's Celery task calls."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from sdfarm.config import Settings
from sdfarm.db.engine import session_factory
from sdfarm.db.jobs import queued_batches


@dataclass
class LocalResult:
    done: int = 0
    failed: int = 0
    canceled: int = 0
    failed_ids: list[int] = field(default_factory=list)


class LocalExecutor:
    """Renders batches one after another in this process; ``join()`` gives the tally."""

    def __init__(self, settings: Settings, progress=None) -> None:
        self.settings = settings
        self.progress = progress
        self.result = LocalResult()

    def submit(self, job_ids: Sequence[int], *, exact_pass: bool = False) -> None:
        from sdfarm.worker.batch import render_batch  # torch is imported only to render

        outcome = render_batch(job_ids, self.settings, progress=self.progress, exact_pass=exact_pass)
        self.result.done += len(outcome.done)
        self.result.failed += len(outcome.failed)
        self.result.canceled += len(outcome.canceled)
        self.result.failed_ids.extend(outcome.failed)

    def join(self) -> LocalResult:
        return self.result


def queued_job_batches(settings: Settings, sweep_id: int) -> list[tuple[int, ...]]:
    """The sweep's queued jobs, batch by planned batch, in render order."""
    with session_factory(settings.database_url)() as session:
        return [b.job_ids for b in queued_batches(session, [sweep_id])]


def render_sweep_locally(settings: Settings, sweep_id: int, progress=None, *,
                         exact_pass: bool = False) -> LocalResult:
    executor = LocalExecutor(settings, progress)
    for batch in queued_job_batches(settings, sweep_id):
        executor.submit(batch, exact_pass=exact_pass)
    return executor.join()
