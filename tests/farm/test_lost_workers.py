"""A dead worker's jobs come back within a few heartbeats, not a whole lease: the rules on the
database (SQLite and PostgreSQL), and two real workers, one killed -9 mid-sweep."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from sdfarm.db.engine import session_factory
from sdfarm.db.jobs import claim_jobs, requeue_gone
from sdfarm.db.models import FarmWorker, Job, JobStatus, utcnow
from sdfarm.db.workers import gone_holders
from sdfarm.usecases.farm import submit
from sdfarm.usecases.record import record
from sdfarm.usecases.render import load_plan
from tests.conftest import deadline, write_job
from tests.farm.conftest import wait_until

pytestmark = pytest.mark.farm

HERE = socket.gethostname()
#: Heartbeat interval the rules are read with: stale after 30 s, dead elsewhere after 60 s.
BEAT = 10.0


@pytest.fixture(params=["sqlite", "postgresql"])
def db_settings(request, settings):
    if request.param == "sqlite":
        return settings
    return settings.with_(database_url=request.getfixturevalue("postgres_url"))


def dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    return int(done.stdout)


def put_worker(settings, name: str, *, host: str, pid: int, beat_ago: float,
               started_ago: float = 3600.0) -> None:
    now = utcnow()
    with session_factory(settings.database_url).begin() as s:
        s.merge(FarmWorker(name=name, host=host, pid=pid, state="busy", jobs_done=0,
                           started_at=now - timedelta(seconds=started_ago),
                           last_heartbeat=now - timedelta(seconds=beat_ago)))


def make_jobs(settings, tmp_path, n: int) -> list[int]:
    path = write_job(tmp_path, f'model = "builtin:tiny"\nprompt = "a lake"\nsteps = 2\nwidth = 8\n'
                               f'height = 8\nseeds = "1-{n}"\nbatch_size = 2\n',
                     name=f"{uuid.uuid4().hex}.toml")
    sweep_id = record(settings, load_plan(settings, path))
    with session_factory(settings.database_url)() as s:
        return list(s.scalars(select(Job.id).where(Job.sweep_id == sweep_id).order_by(Job.seq)))


def hold(settings, ids, worker: str, *, ago: float = 0.0) -> None:
    """``worker`` claims ``ids`` ``ago`` seconds ago, under a lease far longer than any test."""
    with session_factory(settings.database_url).begin() as s:
        assert len(claim_jobs(s, ids, token=uuid.uuid4().hex, worker=worker, lease_seconds=3600,
                              now=utcnow() - timedelta(seconds=ago))) == len(ids)


def release(settings, watched_for=None, max_attempts=3):
    with session_factory(settings.database_url).begin() as s:
        holders = gone_holders(s, host=HERE, heartbeat_seconds=BEAT, watched_for=watched_for)
        return requeue_gone(s, holders, max_attempts)


def jobs_by_id(settings) -> dict[int, Job]:
    with session_factory(settings.database_url)() as s:
        return {j.id: j for j in s.scalars(select(Job))}


def test_only_the_jobs_of_workers_whose_process_is_gone_are_requeued(db_settings, tmp_path):
    ids = make_jobs(db_settings, tmp_path, 10)
    workers = {
        # killed on this machine: heartbeat stopped, pid gone
        "killed@here": dict(host=HERE, pid=dead_pid(), beat_ago=100),
        # on this machine, silent for long but its process is there (stopped, or starved)
        "stopped@here": dict(host=HERE, pid=os.getpid(), beat_ago=600),
        # a busy worker of this machine whose pid is gone from view but who beats
        "beating@here": dict(host=HERE, pid=dead_pid(), beat_ago=0),
        # another machine: silent for twice the stale bound, and for only a bit more than it
        "silent@there": dict(host="elsewhere", pid=1, beat_ago=600),
        "late@there": dict(host="elsewhere", pid=1, beat_ago=40),
    }
    for n, (name, row) in enumerate(workers.items()):
        put_worker(db_settings, name, **row)
        hold(db_settings, ids[2 * n:2 * n + 2], name)
    # A worker that watched the database answer for less than the stale bound cannot tell a
    # silence from an outage: it leaves them all alone
    assert release(db_settings, watched_for=20.0).requeued == []
    # ...for less than the dead bound, it trusts only the process table
    assert release(db_settings, watched_for=40.0).requeued == ids[0:2]
    # Once it has watched long enough, the silent machine's jobs come back too
    assert release(db_settings, watched_for=100.0).requeued == ids[6:8]
    jobs = jobs_by_id(db_settings)
    back = ids[0:2] + ids[6:8]
    assert all((jobs[i].status, jobs[i].claim_token, jobs[i].lease_until, jobs[i].attempts)
               == (JobStatus.queued, None, None, 1) for i in back)
    assert all(jobs[i].status == JobStatus.running and jobs[i].claim_token
               for i in ids if i not in back)
    # Nothing is released twice
    assert release(db_settings).requeued == []


def test_a_gone_workers_job_out_of_attempts_is_failed_with_the_reason(db_settings, tmp_path):
    ids = make_jobs(db_settings, tmp_path, 2)
    put_worker(db_settings, "killed@here", host=HERE, pid=dead_pid(), beat_ago=100)
    hold(db_settings, ids, "killed@here")
    with session_factory(db_settings.database_url).begin() as s:
        s.execute(update(Job).where(Job.id == ids[1]).values(attempts=3))
    result = release(db_settings, max_attempts=3)
    assert (result.requeued, result.failed) == ([ids[0]], [ids[1]])
    poison = jobs_by_id(db_settings)[ids[1]]
    assert poison.status == JobStatus.failed and poison.claim_token is None
    assert poison.error.startswith("worker died or hung 3 times while rendering this job")


def test_a_worker_restarted_under_its_name_frees_what_its_last_process_held(db_settings, tmp_path):
    # Given a worker killed holding two jobs and restarted at once, under its name, on this
    # machine: its row is fresh and its new process holds two jobs of its own
    ids = make_jobs(db_settings, tmp_path, 4)
    hold(db_settings, ids[:2], "w@here", ago=30)
    put_worker(db_settings, "w@here", host=HERE, pid=os.getpid(), beat_ago=0, started_ago=10)
    hold(db_settings, ids[2:], "w@here")
    # Then the old process's jobs are requeued, the new process's kept
    assert release(db_settings, watched_for=0.0).requeued == ids[:2]
    jobs = jobs_by_id(db_settings)
    assert [jobs[i].status for i in ids] == [JobStatus.queued] * 2 + [JobStatus.running] * 2


def test_a_row_taken_over_since_it_was_read_frees_nothing_of_the_new_process(db_settings,
                                                                            tmp_path):
    # Given a killed worker seen as gone, holding one job...
    ids = make_jobs(db_settings, tmp_path, 2)
    put_worker(db_settings, "w@here", host=HERE, pid=dead_pid(), beat_ago=100, started_ago=200)
    hold(db_settings, ids[:1], "w@here", ago=150)
    with session_factory(db_settings.database_url)() as s:
        holders = gone_holders(s, host=HERE, heartbeat_seconds=BEAT)
    assert [(h.name, h.whole) for h in holders] == [("w@here", True)]
    # ...when a new process registers under its name and claims a job before the requeue
    put_worker(db_settings, "w@here", host=HERE, pid=os.getpid(), beat_ago=0, started_ago=0)
    hold(db_settings, ids[1:], "w@here")
    with session_factory(db_settings.database_url).begin() as s:
        result = requeue_gone(s, holders, 3)
    # Then the stale reading frees nothing (the new process's job by name least of all)...
    assert result.requeued == [] and result.failed == []
    # ...and the next reading frees the old process's job only
    assert release(db_settings).requeued == ids[:1]
    assert jobs_by_id(db_settings)[ids[1]].status == JobStatus.running


# --- the farm -------------------------------------------------------------------------------

def test_recover_requeues_a_gone_workers_jobs_and_says_so(farm, tmp_path):
    path = write_job(tmp_path, 'model = "builtin:tiny"\nprompt = "x"\nwidth = 8\nheight = 8\n'
                               'seeds = "1-3"\n')
    sweep_id = submit(farm.settings, load_plan(farm.settings, path)).sweep_id
    ids = [j.id for j in farm.jobs(sweep_id)]
    put_worker(farm.settings, "killed@here", host=HERE, pid=dead_pid(), beat_ago=100)
    hold(farm.settings, ids[:2], "killed@here")
    out = farm.sdfarm("recover").stdout
    assert out.startswith("requeued 0 job(s) with an expired lease and 2 of workers found gone")
    assert [j.status for j in farm.jobs(sweep_id)] == [JobStatus.queued] * 3


def test_a_worker_hung_loading_its_model_loses_its_jobs_to_another_after_the_bound(farm,
                                                                                  tmp_path):
    # Given a worker whose device hangs while loading (it keeps beating: it is alive), with a
    # bound of two seconds to the first step and a short lease
    hung = {"SDFARM_TEST_LOAD_SECONDS": "3600", "SDFARM_FIRST_STEP_SECONDS": f"{deadline(2):g}"}
    farm.start_worker("hung@test", **hung)
    farm.wait_ready("hung@test")
    path = write_job(tmp_path, 'model = "builtin:tiny"\nprompt = "x"\nwidth = 8\nheight = 8\n'
                               'seeds = "1-2"\nbatch_size = 2\n')
    sweep_id = submit(farm.settings, load_plan(farm.settings, path)).sweep_id
    wait_until(lambda: farm.running_on("hung@test"), "the hung worker to claim", farm=farm)
    # When a healthy worker joins
    farm.start_worker("healthy@test")
    # Then it renders the jobs once the bound and the lease have passed
    jobs = farm.wait_finished(sweep_id, timeout=60)
    assert [(j.status, j.worker, j.attempts) for j in jobs] == [
        (JobStatus.done, "healthy@test", 2)] * 2
    assert "no denoising step" in (farm.folder / "hung@test.log").read_text()



def test_a_killed_workers_jobs_are_rendered_by_the_other_long_before_its_lease(farm, tmp_path):
    # Given two workers sharing a sweep, with a ten-minute lease and a half-second heartbeat
    # (no periodic recovery: the heartbeat alone must find the dead worker)
    env = {"SDFARM_LEASE_SECONDS": "600", "SDFARM_HEARTBEAT_SECONDS": "0.5",
           "SDFARM_RECOVER_INTERVAL": "3600", "SDFARM_RENDERER": "fake:0.3"}
    farm.start_worker("victim@test", **env)
    farm.start_worker("steady@test", **env)
    path = write_job(tmp_path, 'model = "builtin:tiny"\nprompt = "a lake"\nsteps = 5\n'
                               'width = 8\nheight = 8\nseeds = "1-16"\nbatch_size = 2\n')
    sweep_id = submit(farm.settings, load_plan(farm.settings, path)).sweep_id
    # When the victim is killed -9 while it holds jobs
    held = wait_until(lambda: farm.running_on("victim@test"), "the victim to hold jobs",
                      farm=farm)
    farm.kill("victim@test", signal.SIGKILL)
    killed_at = time.monotonic()
    # Then the sweep completes well within the lease, its jobs rendered by the other worker
    jobs = farm.wait_finished(sweep_id, timeout=40)
    took = time.monotonic() - killed_at
    assert took < 600 / 4
    assert [j.status for j in jobs] == [JobStatus.done] * 16
    assert len({j.output_path for j in jobs}) == 16
    assert all(Path(j.output_path).is_file() for j in jobs)
    was_held = {j.id for j in held}
    assert all(j.worker == "steady@test" and j.attempts == 2 for j in jobs if j.id in was_held)
    assert "are gone: requeued their jobs" in (farm.folder / "steady@test.log").read_text()


def test_after_a_database_outage_a_heartbeat_counts_its_watch_from_the_return(settings,
                                                                            postgres_server):
    import psycopg

    from sdfarm.worker.heartbeat import Heartbeat, WorkerState, register_worker

    # Given a worker's heartbeat on a real PostgreSQL database, reporting to its lost-worker
    # check how long it has seen the database answer
    url = postgres_server.create_database()
    name = url.rsplit("/", 1)[1]
    fast = settings.with_(database_url=url, heartbeat_seconds=0.2)
    register_worker(fast, "w@test", "cpu")
    seen: list[float] = []
    heartbeat = Heartbeat(fast, "w@test", WorkerState(), lost=seen.append)
    heartbeat.start()

    def admin(sql: str) -> None:
        with psycopg.connect(postgres_server.dsn("postgres"), autocommit=True) as conn:
            conn.execute(sql)

    try:
        wait_until(lambda: seen and seen[-1] > 1.0, "a second of answers")
        # When the database refuses every connection for a while, then comes back
        admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        admin(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'")
        time.sleep(deadline(0.5))
        during = len(seen)
        time.sleep(deadline(1.5))
        assert len(seen) == during, "no lost-worker check without a heartbeat written"
        admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        back = time.monotonic()
        wait_until(lambda: len(seen) > during, "a heartbeat after the outage")
        # Then its watch starts again from the return: the silence of the outage is no one's
        assert seen[during] <= time.monotonic() - back
    finally:
        admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        heartbeat.stop()
