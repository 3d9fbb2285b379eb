"""The queue rules in the database, on SQLite and on a real PostgreSQL: who may claim a job,
when a dead worker's job comes back, when it is failed instead, and that concurrent claimers
never share a job."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from sdfarm.db.batches import queued_batches
from sdfarm.db.engine import session_factory
from sdfarm.db.jobs import cancel_jobs, claim_jobs, requeue_expired, retry_jobs
from sdfarm.db.models import Job, JobStatus, utcnow
from sdfarm.usecases.record import record
from sdfarm.usecases.render import load_plan
from sdfarm.worker.batch import render_batch
from sdfarm.worker.render import FakeRenderer
from tests.conftest import deadline, write_job

pytestmark = pytest.mark.farm


@pytest.fixture(params=["sqlite", "postgresql"])
def db_settings(request, settings):
    if request.param == "sqlite":
        return settings
    return settings.with_(database_url=request.getfixturevalue("postgres_url"))


def make_sweep(settings, tmp_path, seeds="1-8", batch_size=4) -> list[int]:
    path = write_job(tmp_path, f'model = "builtin:tiny"\nprompt = "a lake"\nsteps = 2\nwidth = 8\n'
                               f'height = 8\nseeds = "{seeds}"\nbatch_size = {batch_size}\n',
                     name=f"{uuid.uuid4().hex}.toml")
    sweep_id = record(settings, load_plan(settings, path))
    with session_factory(settings.database_url)() as s:
        return list(s.scalars(select(Job.id).where(Job.sweep_id == sweep_id).order_by(Job.seq)))


def claim(settings, ids, worker="w", lease=60.0, now=None, **kw) -> list[int]:
    with session_factory(settings.database_url).begin() as s:
        return [j.id for j in claim_jobs(s, ids, token=uuid.uuid4().hex, worker=worker,
                                         lease_seconds=lease, now=now, **kw)]


def job(settings, job_id) -> Job:
    with session_factory(settings.database_url)() as s:
        return s.get(Job, job_id)


def expire(settings, ids) -> None:
    with session_factory(settings.database_url).begin() as s:
        s.execute(update(Job).where(Job.id.in_(ids)).values(lease_until=utcnow() - timedelta(seconds=1)))


def test_a_job_held_by_a_live_worker_or_done_is_not_claimed_again(db_settings, tmp_path):
    ids = make_sweep(db_settings, tmp_path)
    assert claim(db_settings, ids[:2], worker="a") == ids[:2]
    # Another delivery of the same ids while the lease is live: nothing to claim.
    assert claim(db_settings, ids[:2], worker="b") == []
    assert job(db_settings, ids[0]).worker == "a" and job(db_settings, ids[0]).attempts == 1


def test_a_job_whose_lease_expired_is_claimable_again_with_one_more_attempt(db_settings, tmp_path):
    ids = make_sweep(db_settings, tmp_path)
    claim(db_settings, ids[:1], worker="dead")
    expire(db_settings, ids[:1])
    assert claim(db_settings, ids[:1], worker="alive", max_attempts=3) == ids[:1]
    j = job(db_settings, ids[0])
    assert (j.worker, j.attempts, j.status) == ("alive", 2, JobStatus.running)


def test_a_job_that_outlived_max_attempts_is_failed_with_the_reason_not_claimed(db_settings, tmp_path):
    ids = make_sweep(db_settings, tmp_path)
    for n in range(3):
        assert claim(db_settings, ids[:1], worker=f"w{n}", max_attempts=3) == ids[:1]
        expire(db_settings, ids[:1])
    assert claim(db_settings, ids[:1], worker="w3", max_attempts=3) == []
    j = job(db_settings, ids[0])
    assert j.status == JobStatus.failed and j.attempts == 3
    assert j.error.startswith("worker died or hung 3 times while rendering this job")
    assert "last on w2" in j.error


def test_recovery_requeues_expired_leases_and_fails_exhausted_ones(db_settings, tmp_path):
    ids = make_sweep(db_settings, tmp_path)
    claim(db_settings, ids[:2], worker="dead")
    with session_factory(db_settings.database_url).begin() as s:
        s.execute(update(Job).where(Job.id == ids[1]).values(attempts=3))
    claim(db_settings, ids[2:3], worker="alive")
    expire(db_settings, ids[:2])
    with session_factory(db_settings.database_url).begin() as s:
        result = requeue_expired(s, max_attempts=3)
    assert result.requeued == [ids[0]] and result.failed == [ids[1]]
    assert job(db_settings, ids[0]).status == JobStatus.queued
    assert job(db_settings, ids[2]).status == JobStatus.running  # a live lease is left alone
    # The requeued job is a suspect: it travels alone, after the fresh batches.
    with session_factory(db_settings.database_url)() as s:
        batches = queued_batches(s)
    assert [b.job_ids for b in batches] == [tuple(ids[3:4]), tuple(ids[4:8]), (ids[0],)]
    assert [b.suspect for b in batches] == [False, False, True]


def test_concurrent_claimers_never_share_a_job(db_settings, tmp_path):
    # Given 40 jobs and eight threads that each try to claim all of them, twice over
    ids = make_sweep(db_settings, tmp_path, seeds="1-40")
    got: dict[str, list[int]] = {}
    barrier = threading.Barrier(8)

    def claimer(name: str) -> None:
        barrier.wait()
        mine = []
        for chunk in (ids[::-1], ids):
            for start in range(0, 40, 5):
                mine += claim(db_settings, chunk[start:start + 5], worker=name)
        got[name] = mine

    threads = [threading.Thread(target=claimer, args=(f"t{n}",)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Then every job was claimed exactly once, by the worker its row names
    claimed = [i for mine in got.values() for i in mine]
    assert sorted(claimed) == ids
    for name, mine in got.items():
        assert all(job(db_settings, i).worker == name and job(db_settings, i).attempts == 1 for i in mine)


def test_cancel_then_retry_puts_failed_and_canceled_jobs_back_with_attempts_reset(db_settings, tmp_path):
    ids = make_sweep(db_settings, tmp_path)
    sweep_id = job(db_settings, ids[0]).sweep_id
    claim(db_settings, ids[:1])
    with session_factory(db_settings.database_url).begin() as s:
        s.execute(update(Job).where(Job.id == ids[7]).values(status=JobStatus.done))
        s.execute(update(Job).where(Job.id == ids[6]).values(status=JobStatus.failed, attempts=3,
                                                             error="boom"))
        canceled = cancel_jobs(s, sweep_id=sweep_id)
    assert (canceled.queued, canceled.running) == (5, 1)
    with session_factory(db_settings.database_url).begin() as s:
        back = retry_jobs(s, sweep_id)
    assert sorted(back) == ids[:7]
    assert all(job(db_settings, i).status == JobStatus.queued and job(db_settings, i).attempts == 0
               and job(db_settings, i).error is None for i in ids[:7])
    assert job(db_settings, ids[7]).status == JobStatus.done


class _PassRecorder(FakeRenderer):
    def __init__(self) -> None:
        super().__init__(0.0)
        self.passes: list[list[int]] = []

    def render(self, specs, **kw):
        self.passes.append([s.seed for s in specs])
        return super().render(specs, **kw)


def test_a_job_whose_worker_died_on_it_is_rendered_alone_after_its_neighbours(settings, tmp_path):
    # Given a batch of four where the second job was claimed once by a worker that died
    ids = make_sweep(settings, tmp_path, seeds="1-4")
    claim(settings, ids[1:2], worker="dead")
    expire(settings, ids[1:2])
    # When the batch is rendered
    renderer = _PassRecorder()
    outcome = render_batch(ids, settings, renderer=renderer)
    # Then its three neighbours share a pass and the suspect gets one of its own, last
    assert renderer.passes == [[1, 3, 4], [2]]
    assert sorted(outcome.done) == ids and job(settings, ids[1]).attempts == 2


class _HangsAfterFirstStep(FakeRenderer):
    """A render whose device stops responding after one step (for ``seconds``)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(0.0)
        self.hang = seconds

    def render(self, specs, *, on_step, **kw):
        on_step()
        import time

        time.sleep(self.hang)
        return super().render(specs, on_step=lambda: None, **kw)


def test_a_render_that_stops_making_steps_loses_its_lease_to_another_worker(settings, tmp_path):
    # Given a pass that hangs after its first step, under a one-second lease (lease, hang and
    # look all scaled alike by the machine's load)
    quick = settings.with_(lease_seconds=deadline(1.0))
    ids = make_sweep(quick, tmp_path, seeds="1-2", batch_size=2)
    outcome = {}
    hung = threading.Thread(target=lambda: outcome.update(
        first=render_batch(ids, quick, renderer=_HangsAfterFirstStep(deadline(4.0)), worker="hung")))
    hung.start()
    # When another worker looks at the jobs after the lease ran out
    import time

    time.sleep(deadline(2.5))
    taken = claim(quick, ids, worker="healthy", max_attempts=3)
    hung.join()
    # Then it could take them over: the hung render had stopped renewing the lease...
    assert taken == ids
    # ...and the late render records nothing over the new claim
    assert outcome["first"].done == [] and job(quick, ids[0]).worker == "healthy"


def _render_in_thread(ids, settings, renderer, worker) -> tuple[threading.Thread, dict]:
    outcome: dict = {}
    thread = threading.Thread(target=lambda: outcome.update(
        result=render_batch(ids, settings, renderer=renderer, worker=worker)))
    thread.start()
    return thread, outcome


def test_a_pass_hung_before_its_first_step_gives_its_jobs_back_after_the_bound(settings, tmp_path):
    from tests.farm.conftest import wait_until

    # Given a device that hangs while loading its model, under a one-second lease and a bound
    # of three seconds to the first step
    quick = settings.with_(lease_seconds=deadline(1.0), first_step_seconds=deadline(2.0))
    ids = make_sweep(quick, tmp_path, seeds="1-2", batch_size=2)
    started = time.monotonic()
    hung, outcome = _render_in_thread(ids, quick, FakeRenderer(0.0, load_delay=deadline(5.0)),
                                      "hung")
    wait_until(lambda: job(quick, ids[0]).worker == "hung", "the hung worker's claim")
    # When another worker keeps trying to claim its jobs
    taken = wait_until(lambda: claim(quick, ids, worker="healthy", max_attempts=3),
                       "the jobs to be claimable", timeout=10)
    waited = time.monotonic() - started
    # Then it gets them, but only once the bound has passed (the lease was renewed till then)
    assert taken == ids and waited > quick.first_step_seconds
    # ...and the late render records nothing over the new claim
    hung.join()
    assert outcome["result"].done == [] and job(quick, ids[0]).worker == "healthy"


def test_the_jobs_of_a_hung_load_say_why_they_come_back(settings, tmp_path):
    from tests.farm.conftest import wait_until

    quick = settings.with_(lease_seconds=deadline(30.0), first_step_seconds=deadline(0.5))
    ids = make_sweep(quick, tmp_path, seeds="1", batch_size=1)
    hung, _ = _render_in_thread(ids, quick, FakeRenderer(0.0, load_delay=deadline(3.0)), "hung")
    error = wait_until(lambda: job(quick, ids[0]).error, "the reason on the job", timeout=10)
    assert "no denoising step" in error and "SDFARM_FIRST_STEP_SECONDS" in error
    hung.join()


def test_a_slow_load_within_the_bound_keeps_its_jobs(settings, tmp_path):
    # Given a model load three times as long as the lease, well within the bound
    quick = settings.with_(lease_seconds=deadline(1.0), first_step_seconds=deadline(30.0))
    ids = make_sweep(quick, tmp_path, seeds="1-2", batch_size=2)
    loading, outcome = _render_in_thread(ids, quick, FakeRenderer(0.0, load_delay=deadline(3.0)),
                                         "loading")
    # When another worker tries to claim its jobs after two leases' time
    time.sleep(deadline(2.0))
    taken = claim(quick, ids, worker="other", max_attempts=3)
    loading.join()
    # Then they are still held, and the slow worker renders them
    assert taken == []
    assert sorted(outcome["result"].done) == ids
    assert job(quick, ids[0]).worker == "loading" and job(quick, ids[0]).error is None
