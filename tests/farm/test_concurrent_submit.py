"""Ten users submitting at once: ten ``sdfarm submit`` processes of 200 images each against one
database and one Redis, rendered by two workers: every job recorded once and rendered once, on
SQLite and on PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select

from sdfarm.db.models import Job, JobStatus, Sweep
from tests.conftest import deadline, write_job
from tests.farm.conftest import wait_until

pytestmark = pytest.mark.farm

SUBMITTERS = 10
IMAGES_EACH = 200


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_ten_concurrent_submits_record_and_render_every_job_once(make_farm, tmp_path, request, database):
    url = request.getfixturevalue("postgres_url") if database == "postgresql" else None
    farm = make_farm(url, SDFARM_RENDERER="fake:0", SDFARM_LEASE_SECONDS="60")
    # Given two workers and ten job files of 200 images each (8x8 pixels, one step)
    for name in ("w1@test", "w2@test"):
        farm.start_worker(name, wait=False)
    for name in ("w1@test", "w2@test"):
        farm.wait_registered(name, farm.workers[name].pid)
    files = [write_job(tmp_path, f'name = "user{n}"\nmodel = "builtin:tiny"\nprompt = "user {n}"\n'
                                 f'steps = 1\nwidth = 8\nheight = 8\nseeds = "1-{IMAGES_EACH}"\n'
                                 f'batch_size = 25\n', name=f"user{n}.toml")
             for n in range(SUBMITTERS)]
    # When ten `sdfarm submit` processes run at once
    procs = [subprocess.Popen([sys.executable, "-m", "sdfarm.cli", "submit", str(f)], env=farm.env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for f in files]
    results = [p.communicate(timeout=deadline(180)) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in results]
    sweep_ids = sorted(int(out.strip()) for out, _ in results)
    # Then every sweep is recorded once with all its jobs
    with farm.session() as s:
        assert s.scalar(select(func.count()).select_from(Sweep)) == SUBMITTERS
        per_sweep = dict(s.execute(select(Job.sweep_id, func.count()).group_by(Job.sweep_id)).all())
    assert sorted(per_sweep) == sweep_ids and set(per_sweep.values()) == {IMAGES_EACH}

    # ...and, once the workers are through, every job is done, claimed once, on disk once
    def all_done() -> bool:
        with farm.session() as s:
            return not s.scalar(select(func.count()).where(Job.status != JobStatus.done))
    wait_until(all_done, "all 2000 jobs to be done", timeout=240, farm=farm)
    with farm.session() as s:
        attempts = s.execute(select(Job.attempts, func.count()).group_by(Job.attempts)).all()
        paths = s.scalars(select(Job.output_path)).all()
        workers = set(s.scalars(select(Job.worker).distinct()))
    assert attempts == [(1, SUBMITTERS * IMAGES_EACH)]
    assert len(set(paths)) == len(paths) == SUBMITTERS * IMAGES_EACH
    assert all(Path(p).is_file() for p in paths)
    assert workers == {"w1@test", "w2@test"}


SAME_FILE = """
name = "twice"
model = "builtin:tiny"
prompt = "a lighthouse"
steps = 1
width = 8
height = 8
seeds = "1-{n}"
batch_size = 10
"""


def _submit_at_once(farm, path, times: int) -> list[int]:
    procs = [subprocess.Popen([sys.executable, "-m", "sdfarm.cli", "submit", str(path)],
                              env=farm.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(times)]
    results = [p.communicate(timeout=deadline(180)) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in results]
    return sorted(int(out.strip()) for out, _ in results)


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_the_same_file_submitted_twice_at_once_renders_each_image_once(make_farm, tmp_path,
                                                                       request, database):
    url = request.getfixturevalue("postgres_url") if database == "postgresql" else None
    farm = make_farm(url, SDFARM_RENDERER="fake:0.01", SDFARM_LEASE_SECONDS="60")
    path = write_job(tmp_path, SAME_FILE.format(n=100))
    first, second = _submit_at_once(farm, path, 2)
    farm.start_worker("w1@test", wait=False)
    farm.start_worker("w2@test", wait=False)

    jobs = {sweep: farm.wait_finished(sweep, timeout=120) for sweep in (first, second)}
    # Both sweeps are complete, with every image in their own folders...
    for sweep_jobs in jobs.values():
        assert len(sweep_jobs) == 100 and {j.status for j in sweep_jobs} == {JobStatus.done}
        assert all(Path(j.output_path).is_file() for j in sweep_jobs)
    # ...but each key was rendered once: the later sweep's jobs took the earlier's images.
    with farm.session() as s:
        rendered = s.scalar(select(func.count()).where(Job.status == JobStatus.done,
                                                       Job.reused_from_job_id.is_(None)))
    assert rendered == 100
    by_key = {j.key: j for j in jobs[first]}
    for job in jobs[second]:
        assert job.reused_from_job_id == by_key[job.key].id
        assert job.sha256 == by_key[job.key].sha256
        assert Path(job.output_path).parent != Path(by_key[job.key].output_path).parent


def test_jobs_waiting_for_a_canceled_sweep_render_themselves(make_farm, tmp_path):
    farm = make_farm(SDFARM_RENDERER="fake:0.01")
    path = write_job(tmp_path, SAME_FILE.format(n=6))
    first = int(farm.sdfarm("submit", path).stdout)
    again = farm.sdfarm("submit", path)
    second = int(again.stdout)
    assert "6 waiting for the identical jobs another sweep is rendering" in again.stderr
    assert farm.statuses(second) == {"waiting": 6}

    farm.sdfarm("cancel", first)  # nobody rendered anything yet
    assert farm.statuses(second) == {"queued": 6}
    farm.start_worker("w1@test")
    assert {j.status for j in farm.wait_finished(second)} == {JobStatus.done}
    assert farm.statuses(first) == {"canceled": 6}


def test_jobs_waiting_for_a_job_that_failed_fail_with_its_reason(make_farm, tmp_path):
    farm = make_farm(SDFARM_RENDERER="fake:0.01")
    path = write_job(tmp_path, SAME_FILE.format(n=2))
    first = int(farm.sdfarm("submit", path).stdout)
    second = int(farm.sdfarm("submit", path).stdout)
    with farm.session() as s, s.begin():
        for job in s.scalars(select(Job).where(Job.sweep_id == first)):
            job.status, job.error = JobStatus.failed, "ModelError: the GPU caught fire\nTraceback"

    farm.sdfarm("recover")
    failed = farm.jobs(second)
    assert {j.status for j in failed} == {JobStatus.failed}
    assert all(j.error.endswith("failed: ModelError: the GPU caught fire") for j in failed)
    # retry renders them in their own sweep
    farm.sdfarm("retry", second)
    farm.start_worker("w1@test")
    assert {j.status for j in farm.wait_finished(second)} == {JobStatus.done}
