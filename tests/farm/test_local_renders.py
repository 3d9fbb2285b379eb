"""A local render's jobs are its own: stopped by Ctrl+C or SIGTERM it records what it did not
render as interrupted and says how to resume; killed with -9, ``recover`` (which every farm
worker runs as it starts) never sends its jobs to the farm's workers."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections import Counter

import pytest
from sqlalchemy import select

from sdfarm.broker.app import make_app
from sdfarm.broker.queue import job_ids_in_queue
from sdfarm.db.engine import session_factory
from sdfarm.db.models import Job, JobStatus, Sweep
from sdfarm.db.sweeps import Executor
from sdfarm.usecases.record import record
from sdfarm.usecases.render import load_plan
from tests.conftest import deadline, write_job
from tests.farm.conftest import Farm, flush_redis, wait_until

#: 24 images of about 0.2 s each with the fake renderer: long enough to be stopped halfway.
JOB = """
name = "interrupted"
model = "builtin:tiny"
prompt = "a lighthouse"
seeds = "1-24"
steps = 4
width = 64
height = 64
batch_size = 2
"""


def _statuses(farm: Farm) -> Counter[str]:
    with farm.session() as session:
        return Counter(s.value for s in session.scalars(select(Job.status)))


def _start_render(farm: Farm, job_file) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "sdfarm.cli", "render", "-q", str(job_file)],
                            env={**farm.env, "SDFARM_RENDERER": "fake:0.2"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _some_done(farm: Farm) -> bool:
    return _statuses(farm)["done"] >= 2


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_stopped_render_records_its_unrendered_jobs_as_interrupted_and_says_how_to_resume(
        farm: Farm, tmp_path, sig):
    job_file = write_job(tmp_path, JOB)
    proc = _start_render(farm, job_file)
    wait_until(lambda: _some_done(farm), "the local render to finish two images")
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=deadline(30))

    assert proc.returncode == 128 + sig, err
    counts = _statuses(farm)
    assert counts["queued"] == counts["running"] == 0, counts
    assert counts["canceled"] > 0 and counts["done"] + counts["canceled"] == 24, counts
    with farm.session() as session:
        errors = set(session.scalars(select(Job.error).where(Job.status == JobStatus.canceled)))
    assert len(errors) == 1 and errors.pop().startswith("interrupted: the `sdfarm render`")
    assert f"interrupted by {sig.name}" in err
    assert f"`sdfarm render {job_file}` again renders them" in err
    assert "Traceback" not in err

    # What it says works: the same file again renders only what was left.
    again = farm.sdfarm("render", "-q", job_file, SDFARM_RENDERER="fake:0.01")
    assert f"{counts['done']} reused, {counts['canceled']} to render" in again.stderr


def test_a_farm_worker_never_renders_a_killed_local_renders_jobs(farm: Farm, tmp_path):
    job_file = write_job(tmp_path, JOB)
    proc = _start_render(farm, job_file)
    wait_until(lambda: _some_done(farm), "the local render to finish two images")
    proc.kill()
    proc.wait(deadline(30))
    left = _statuses(farm)
    assert left["queued"] + left["running"] > 0, left  # what a kill -9 leaves behind

    # A worker starts with nothing submitted: its start runs recover, which used to send
    # every queued job to the broker, and then renders what it gets.
    farm.start_worker("w1")
    farm.wait_ready("w1")
    wait_until(lambda: _statuses(farm)["queued"] + _statuses(farm)["running"] == 0,
               "the dead render's jobs to be settled", farm=farm)
    with farm.session() as session:
        jobs = list(session.scalars(select(Job)))
        sweep = session.scalars(select(Sweep)).one()
    assert (sweep.executor, sweep.executor_pid) == ("local", proc.pid)
    assert not [j for j in jobs if j.worker == "w1"], "a farm worker rendered a local job"
    interrupted = [j for j in jobs if j.status == JobStatus.canceled]
    assert len(interrupted) == left["queued"] + left["running"]
    assert all(f"its process {proc.pid}" in j.error for j in interrupted)


def test_recover_leaves_a_live_local_render_alone_and_sends_the_farms_jobs(farm: Farm, tmp_path):
    """A render still running (this test's own pid stands for it) keeps its queued jobs: they
    are neither sent to the broker nor canceled; a submitted sweep's are sent."""
    local = write_job(tmp_path, JOB, "local.toml")
    farmed = write_job(tmp_path, JOB.replace('"interrupted"', '"farmed"')
                       .replace("1-24", "101-104"), "farm.toml")
    farm.sdfarm("submit", farmed)
    me = Executor("local", socket.gethostname(), os.getpid())
    local_id = record(farm.settings, load_plan(farm.settings, local), executor=me)
    flush_redis(farm.env["SDFARM_BROKER_URL"])  # the submit's message is lost: recover resends
    app = make_app(farm.settings)

    report = farm.sdfarm("recover").stderr
    assert f"sweep {local_id} (24 job(s)) left to them, not sent to the farm" in report
    with app.connection_for_write() as conn:
        sent = job_ids_in_queue(conn.default_channel, farm.settings.queue)
    with farm.session() as session:
        local_ids = set(session.scalars(select(Job.id).where(Job.sweep_id == local_id)))
        local_status = set(session.scalars(select(Job.status).where(Job.sweep_id == local_id)))
    assert len(sent) == 4 and not sent & local_ids
    assert local_status == {JobStatus.queued}


def test_retry_hands_a_local_sweeps_interrupted_jobs_to_the_farm(farm: Farm, tmp_path):
    job_file = write_job(tmp_path, JOB)
    proc = _start_render(farm, job_file)
    wait_until(lambda: _some_done(farm), "the local render to finish two images")
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=deadline(30))
    with farm.session() as session:
        sweep_id = session.scalars(select(Sweep.id)).one()

    farm.sdfarm("retry", sweep_id)
    farm.start_worker("w1", SDFARM_RENDERER="fake:0.01")
    jobs = farm.wait_finished(sweep_id)
    assert {j.status for j in jobs} == {JobStatus.done}
    with session_factory(farm.settings.database_url)() as session:
        assert session.get(Sweep, sweep_id).executor == "farm"
