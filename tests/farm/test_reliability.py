"""Nothing is lost: killed workers, a poison job, a flushed Redis, a duplicate delivery, a
cancel and a retry, each against real workers on a real redis-server (fake renderer)."""

from __future__ import annotations

import re
import signal
import time
from datetime import timedelta
from pathlib import Path

import pytest

from sdfarm.db.models import JobStatus, utcnow
from sdfarm.usecases.farm import submit
from sdfarm.usecases.render import load_plan
from tests.conftest import deadline, write_job
from tests.farm.conftest import flush_redis, wait_until

pytestmark = pytest.mark.farm


def sweep_file(folder: Path, *, prompt: str = "a lake", seeds: str = "1-12", batch_size: int = 2,
               steps: int = 5) -> Path:
    return write_job(folder, f'name = "farm"\nmodel = "builtin:tiny"\nprompt = "{prompt}"\n'
                             f'steps = {steps}\nwidth = 8\nheight = 8\nseeds = "{seeds}"\n'
                             f'batch_size = {batch_size}\n', name=f"farm-{time.monotonic_ns()}.toml")


def submit_file(farm, path: Path, priority: int = 0) -> int:
    return submit(farm.settings, load_plan(farm.settings, path), priority=priority).sweep_id


def assert_all_done_once_on_disk(jobs) -> None:
    assert [j.status for j in jobs] == [JobStatus.done] * len(jobs)
    paths = [Path(j.output_path) for j in jobs]
    assert len(set(paths)) == len(jobs) and all(p.is_file() for p in paths)
    leftovers = list(paths[0].parent.glob(".*.tmp"))
    assert all(".tmp" in p.name for p in leftovers)  # a killed write leaves a temp file, never a PNG


def test_killing_a_worker_mid_batch_again_and_again_loses_no_job(farm, tmp_path):
    # Given a worker that is restarted whenever it dies, and a sweep of 16 images
    fake = {"SDFARM_RENDERER": "fake:0.15"}
    farm.keep_alive("victim@test", **fake)
    sweep_id = submit_file(farm, sweep_file(tmp_path, seeds="1-16", batch_size=2))
    # When it is killed -9 three times while it holds a running job
    killed_holding: set[int] = set()
    since = utcnow() - timedelta(days=1)

    def held_by_this_life():
        return [j for j in farm.running_on("victim@test") if j.started_at > since]

    for _ in range(3):
        wait_until(held_by_this_life, "the victim to hold a job", farm=farm)
        farm.kill("victim@test", signal.SIGKILL)
        killed_holding.update(j.id for j in held_by_this_life())
        since = utcnow()
    # ...and a second worker joins in
    farm.start_worker("steady@test", wait=False, **fake)
    # Then the sweep completes, every image exactly once on disk, and the attempts show it
    jobs = farm.wait_finished(sweep_id)
    assert_all_done_once_on_disk(jobs)
    assert farm.restarts("victim@test") >= 2 and len(killed_holding) >= 3
    assert all(j.attempts >= 2 for j in jobs if j.id in killed_holding)
    assert all(j.attempts == 1 for j in jobs if j.id not in killed_holding)


def test_a_job_that_kills_its_worker_fails_after_three_attempts_and_the_rest_are_done(farm, tmp_path):
    # Given workers that restart when they die, and one job (in a batch of four) whose render
    # makes its process exit
    farm.keep_alive("w1@test", "w2@test", SDFARM_TEST_CRASH_ON_PROMPT="POISON")
    path = sweep_file(tmp_path, prompt="{POISON|a|b|c|d|e|f|g} lake", seeds="7", batch_size=4)
    sweep_id = submit_file(farm, path)
    # When the sweep runs to its end
    jobs = farm.wait_finished(sweep_id, timeout=90)
    # Then the poison job failed after 3 attempts with the reason, and every other job is done
    poison = [j for j in jobs if "POISON" in j.prompt]
    others = [j for j in jobs if "POISON" not in j.prompt]
    assert len(poison) == 1 and len(others) == 7
    assert poison[0].status == JobStatus.failed and poison[0].attempts == 3
    assert "worker died or hung 3 times while rendering this job" in poison[0].error
    assert all(j.status == JobStatus.done and Path(j.output_path).is_file() for j in others)
    # ...the batch neighbours paid at most one attempt for sharing a pass with it
    assert all(j.attempts <= 2 for j in others)
    assert farm.restarts("w1@test") + farm.restarts("w2@test") >= 3


@pytest.mark.parametrize("how", ["sdfarm recover", "worker restart"])
def test_a_flushed_redis_loses_nothing_once_recovered(farm, tmp_path, broker_url, how):
    # Given one worker that never looks for lost work by itself, busy with a sweep
    farm.start_worker("w@test", SDFARM_RECOVER_INTERVAL="3600", SDFARM_RENDERER="fake:0.15")
    sweep_id = submit_file(farm, sweep_file(tmp_path, seeds="1-16", batch_size=2))
    wait_until(lambda: farm.statuses(sweep_id).get("done", 0) >= 2, "a first batch", farm=farm)
    # When every Redis key is lost mid-sweep (the batch being rendered still ends)
    flush_redis(broker_url)
    time.sleep(deadline(1.0))
    stalled = farm.statuses(sweep_id)
    assert stalled.get("queued", 0) > 0, "the flush should have stranded queued jobs"
    time.sleep(deadline(1.0))
    assert farm.statuses(sweep_id) == stalled, "nothing should run until recovery"
    # ...and then `sdfarm recover` runs, or the worker restarts
    if how == "sdfarm recover":
        out = farm.sdfarm("recover").stdout
        assert f"sent {stalled['queued']} in" in out
    else:
        farm.kill("w@test", signal.SIGTERM)
        farm.start_worker("w@test", SDFARM_RECOVER_INTERVAL="3600", SDFARM_RENDERER="fake:0.02")
    # Then the sweep completes, each image once
    jobs = farm.wait_finished(sweep_id)
    assert_all_done_once_on_disk(jobs)
    assert all(j.attempts == 1 for j in jobs)


def test_a_message_delivered_twice_renders_its_jobs_once(farm, tmp_path):
    # Given two idle workers and a one-second visibility timeout, far below the three-second
    # batch, so that Redis hands the running batch to the idle worker too
    env = {"SDFARM_VISIBILITY_TIMEOUT": "1", "SDFARM_RENDERER": f"fake:{deadline(1.5):g}",
           "SDFARM_LEASE_SECONDS": "30", "SDFARM_RECOVER_INTERVAL": "3600"}
    farm.start_worker("first@test", **env)
    farm.start_worker("second@test", **env)
    sweep_id = submit_file(farm, sweep_file(tmp_path, seeds="1-2", batch_size=2, steps=10))
    # When the batch ends
    jobs = farm.wait_finished(sweep_id)
    # Then the idle worker got the message again, found the jobs held by a live worker, and
    # acknowledged it without rendering: every job done once, by the other worker
    renderer = jobs[0].worker
    other = ({"first@test", "second@test"} - {renderer}).pop()
    wait_until(lambda: "'skipped': [" in (farm.folder / f"{other}.log").read_text()
               and "'skipped': []" not in (farm.folder / f"{other}.log").read_text(),
               "the redelivered message to be skipped", timeout=20, farm=farm)
    assert_all_done_once_on_disk(jobs)
    assert all(j.attempts == 1 and j.worker == renderer for j in jobs)


def test_cancel_stops_the_sweep_and_retry_brings_it_back(farm, tmp_path):
    # Given a worker in the middle of a sweep
    # (the images cost more on a loaded machine, where the `cancel` command starts slower: jobs
    # must still be queued when it lands)
    farm.start_worker("w@test", SDFARM_RENDERER=f"fake:{deadline(0.3):g}")
    sweep_id = submit_file(farm, sweep_file(tmp_path, seeds="1-24", batch_size=2, steps=10))
    wait_until(lambda: farm.statuses(sweep_id).get("done", 0) >= 2 and farm.running_on("w@test"),
               "a batch done and one running", farm=farm)
    # When the sweep is canceled
    out = farm.sdfarm("cancel", sweep_id).stdout
    canceled_at = utcnow()
    queued, running = map(int, re.search(r"canceled (\d+) queued and (\d+) running", out).groups())
    assert queued >= 2
    wait_until(lambda: not farm.running_on("w@test"), "the running pass to stop", farm=farm)
    time.sleep(deadline(1.0))
    # Then no job starts afterwards, and every job not done is canceled, with no image
    jobs = farm.jobs(sweep_id)
    done = [j for j in jobs if j.status == JobStatus.done]
    canceled = [j for j in jobs if j.status == JobStatus.canceled]
    assert len(done) + len(canceled) == 24 and len(canceled) >= queued
    assert all(not Path(j.output_path).exists() for j in canceled)
    assert all(j.started_at is None or j.started_at < canceled_at for j in jobs)
    # When the sweep is retried
    out = farm.sdfarm("retry", sweep_id).stdout
    assert f"{len(canceled)} job(s) queued again" in out
    # Then every job ends done, the retried ones with their attempts counted afresh
    jobs = farm.wait_finished(sweep_id)
    assert_all_done_once_on_disk(jobs)
    assert all(j.attempts == 1 for j in jobs if j.id in {c.id for c in canceled})


def test_a_higher_priority_sweep_runs_first(farm, tmp_path):
    # Given a low and then a high priority sweep, queued while no worker runs
    low = submit_file(farm, sweep_file(tmp_path, seeds="1-6"), priority=0)
    high = submit_file(farm, sweep_file(tmp_path, seeds="101-106"), priority=5)
    # When one worker takes them
    farm.start_worker("w@test")
    low_jobs, high_jobs = farm.wait_finished(low), farm.wait_finished(high)
    # Then every job of the high priority sweep started before any of the low one
    assert max(j.started_at for j in high_jobs) < min(j.started_at for j in low_jobs)
