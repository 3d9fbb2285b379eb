"""The worker registry behind ``sdfarm status``: names are unique across machines, a dead
worker shows as lost, a stopped one as stopped."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from datetime import timedelta

import pytest
from sqlalchemy import select

from sdfarm.db.engine import session_factory
from sdfarm.db.models import FarmWorker, utcnow
from sdfarm.errors import SdfarmError
from sdfarm.usecases.status import status_data
from sdfarm.worker.heartbeat import register_worker

pytestmark = pytest.mark.farm


def put_worker(settings, name: str, *, host: str, pid: int, seconds_ago: float, state: str = "idle") -> None:
    with session_factory(settings.database_url).begin() as s:
        s.merge(FarmWorker(name=name, host=host, pid=pid, state=state, jobs_done=0,
                           started_at=utcnow(), last_heartbeat=utcnow() - timedelta(seconds=seconds_ago)))


def test_a_name_used_by_a_live_worker_on_another_machine_is_refused(settings):
    put_worker(settings, "gpu0@box", host="elsewhere", pid=4242, seconds_ago=1)
    with pytest.raises(SdfarmError, match=r"worker name gpu0@box is in use by pid 4242 on elsewhere"):
        register_worker(settings, "gpu0@box", "cpu")


def test_a_name_is_free_again_once_its_worker_died(settings):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    put_worker(settings, "gpu0@box", host=socket.gethostname(), pid=int(dead.stdout), seconds_ago=1)
    put_worker(settings, "gpu1@box", host="elsewhere", pid=1, seconds_ago=3600)
    register_worker(settings, "gpu0@box", "cpu")  # its process is gone
    register_worker(settings, "gpu1@box", "cpu")  # its heartbeat is an hour old
    # Then both rows now belong to this process, on this machine, as fresh idle workers
    with session_factory(settings.database_url)() as s:
        rows = {w.name: (w.pid, w.host, w.state, w.device) for w in s.scalars(select(FarmWorker))}
    assert rows == {
        "gpu0@box": (os.getpid(), socket.gethostname(), "idle", "cpu"),
        "gpu1@box": (os.getpid(), socket.gethostname(), "idle", "cpu"),
    }


def test_status_shows_a_silent_worker_as_lost_and_a_stopped_one_as_stopped(settings):
    put_worker(settings, "alive@a", host="a", pid=1, seconds_ago=1)
    put_worker(settings, "silent@b", host="b", pid=1, seconds_ago=120)
    put_worker(settings, "done@c", host="c", pid=1, seconds_ago=120, state="stopped")
    states = {w["name"]: w["state"] for w in status_data(settings)["workers"]}
    assert states == {"alive@a": "idle", "silent@b": "lost", "done@c": "stopped"}


def test_sigterm_stops_a_worker_cleanly_and_marks_it_stopped(farm):
    proc = farm.start_worker("w@test")
    farm.wait_ready("w@test")
    farm.kill("w@test", signal.SIGTERM)
    assert proc.returncode == 0
    with farm.session() as s:
        assert s.get(FarmWorker, "w@test").state == "stopped"


def test_a_cold_shutdown_gives_the_running_batch_back_to_the_queue_at_once(farm, tmp_path):
    from sdfarm.db.models import JobStatus
    from sdfarm.usecases.farm import submit
    from sdfarm.usecases.render import load_plan
    from tests.conftest import write_job
    from tests.farm.conftest import wait_until

    # Given a worker in the middle of a long batch, with a lease far longer than the test
    slow = {"SDFARM_RENDERER": "fake:10", "SDFARM_LEASE_SECONDS": "600"}
    proc = farm.start_worker("w@test", **slow)
    path = write_job(tmp_path, 'model = "builtin:tiny"\nprompt = "x"\nsteps = 20\nwidth = 8\n'
                               'height = 8\nseeds = "1-2"\nbatch_size = 2\n')
    sweep_id = submit(farm.settings, load_plan(farm.settings, path)).sweep_id
    wait_until(lambda: farm.running_on("w@test"), "the batch to start", farm=farm)
    # When it gets SIGQUIT (a cold shutdown)
    farm.kill("w@test", signal.SIGQUIT)
    # Then it exits cleanly, its jobs are queued again without an attempt counted...
    assert proc.returncode == 0
    assert [(j.status, j.attempts) for j in farm.jobs(sweep_id)] == [(JobStatus.queued, 0)] * 2
    # ...and the next worker renders them without waiting for the lease to expire
    farm.start_worker("w2@test", SDFARM_RENDERER="fake:0")
    jobs = farm.wait_finished(sweep_id, timeout=30)
    assert [(j.status, j.attempts, j.worker) for j in jobs] == [(JobStatus.done, 1, "w2@test")] * 2


def test_jobs_record_the_name_given_with_no_host_part_as_status_shows_it(farm, tmp_path):
    from sdfarm.db.models import JobStatus
    from sdfarm.usecases.farm import submit
    from sdfarm.usecases.render import load_plan
    from tests.conftest import write_job

    farm.start_worker("w1", SDFARM_RENDERER="fake:0")
    path = write_job(tmp_path, 'model = "builtin:tiny"\nprompt = "x"\nwidth = 8\nheight = 8\n'
                               'seeds = "1-2"\n')
    sweep_id = submit(farm.settings, load_plan(farm.settings, path)).sweep_id
    jobs = farm.wait_finished(sweep_id, timeout=30)
    assert [(j.status, j.worker) for j in jobs] == [(JobStatus.done, "w1")] * 2
    assert [w["name"] for w in status_data(farm.settings)["workers"]] == ["w1"]


def test_recover_with_the_broker_down_says_so_even_when_nothing_is_queued(settings):
    from click.testing import CliRunner

    from sdfarm.cli.main import cli

    with socket.socket() as s:  # a port with nothing listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {"SDFARM_DATABASE_URL": settings.database_url,
           "SDFARM_BROKER_URL": f"redis://127.0.0.1:{port}/0"}
    result = CliRunner().invoke(cli, ["recover"], env=env)
    assert result.exit_code == 1, result.output
    assert result.output.startswith("Error: cannot reach the broker SDFARM_BROKER_URL=")
    assert "held 0" not in result.output


def test_status_drops_a_lost_workers_job_once_another_worker_has_it(settings, tmp_path):
    from sdfarm.db.models import Job, JobStatus
    from sdfarm.usecases.record import record
    from sdfarm.usecases.render import load_plan
    from tests.conftest import write_job

    path = write_job(tmp_path, 'model = "builtin:tiny"\nprompt = "x"\nseeds = "1-2"\n')
    record(settings, load_plan(settings, path))
    with session_factory(settings.database_url).begin() as s:
        first, second = s.scalars(select(Job).order_by(Job.id)).all()
        # w1 died rendering job 1, which w2 then rendered; w2 is rendering job 2 now
        first.status, first.worker = JobStatus.done, "w2"
        second.status, second.worker = JobStatus.running, "w2"
        ids = first.id, second.id
    put_worker(settings, "w1", host="h", pid=1, seconds_ago=600, state="busy")
    put_worker(settings, "w2", host="h", pid=2, seconds_ago=0, state="busy")
    with session_factory(settings.database_url).begin() as s:
        s.get(FarmWorker, "w1").current_job_id = ids[0]
        s.get(FarmWorker, "w2").current_job_id = ids[1]
    current = {w["name"]: (w["state"], w["current_job_id"])
               for w in status_data(settings)["workers"]}
    assert current == {"w1": ("lost", None), "w2": ("busy", ids[1])}
