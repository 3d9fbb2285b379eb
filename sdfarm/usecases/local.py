"""The embedded executor: render a recorded sweep's batches here, in this process, with the
very same ``render_batch`` the farm's Celery task calls."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from sdfarm.config import Settings
from sdfarm.db.batches import queued_batches
from sdfarm.db.engine import session_factory


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


#: Images one ``render_batch`` call of the local executor takes at most. Its planned batches
#: are that call's forward passes, so the pass writer records one while the next renders (a
#: call per one-image batch would wait for each image's write and pay a claim per image).
#: Bounded, so a cancel or Ctrl+C has few claimed jobs to hand back.
LOCAL_CALL_IMAGES = 64


def queued_job_batches(settings: Settings, sweep_id: int) -> list[tuple[int, ...]]:
    """The sweep's queued jobs, batch by planned batch, in render order."""
    with session_factory(settings.database_url)() as session:
        return [b.job_ids for b in queued_batches(session, [sweep_id])]


def _calls(batches: list[tuple[int, ...]]) -> list[list[int]]:
    """Consecutive planned batches joined into ``render_batch`` calls of at most
    :data:`LOCAL_CALL_IMAGES` images (a larger batch is a call of its own)."""
    calls: list[list[int]] = []
    for batch in batches:
        if calls and len(calls[-1]) + len(batch) <= LOCAL_CALL_IMAGES:
            calls[-1].extend(batch)
        else:
            calls.append(list(batch))
    return calls


def render_sweep_locally(settings: Settings, sweep_id: int, progress=None, *,
                         exact_pass: bool = False) -> LocalResult:
    executor = LocalExecutor(settings, progress)
    batches = queued_job_batches(settings, sweep_id)
    # An exact rerun's batch is one pass as given: never joined with another.
    for job_ids in ([list(b) for b in batches] if exact_pass else _calls(batches)):
        executor.submit(job_ids, exact_pass=exact_pass)
    return executor.join()
