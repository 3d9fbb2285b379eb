"""The acceptance test of a disk that fills up (a real 2 MB tmpfs): a local ``sdfarm render``
and a real Celery worker fail no job that has its image, leave no temporary file and nothing
running, and render the rest once there is space again; the worker pauses meanwhile instead of
failing the queue, and ``sdfarm status`` says so. SQLite on the full disk too."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import select

from sdfarm.db.engine import dispose_all, session_factory
from sdfarm.db.models import Job, JobStatus
from sdfarm.usecases.farm import submit
from sdfarm.usecases.render import load_plan
from tests.conftest import deadline, write_job
from tests.diskfill import SmallDisk, small_disk  # noqa: F401 (a fixture)
from tests.farm.conftest import wait_until

pytestmark = pytest.mark.farm

#: Pages a 64x64 noise PNG with its text chunks takes on a tmpfs (12.9 kB: four pages).
IMAGE_PAGES = 4

JOB = """
name = "full"
model = "builtin:tiny"
prompt = "a lighthouse"
seeds = "1-{n}"
steps = 3
width = 64
height = 64
batch_size = 2
"""


def _render(env: dict[str, str], job_file: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sdfarm.cli", "render", "-q", str(job_file)],
                          env={**env, "SDFARM_RENDERER": "fake:0"}, capture_output=True,
                          text=True, timeout=deadline(120))


def _jobs(url: str) -> list[Job]:
    with session_factory(url)() as session:
        return list(session.scalars(select(Job).order_by(Job.sweep_id, Job.seq)))


def _assert_one_error_line(proc: subprocess.CompletedProcess, folder: Path) -> str:
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if not line.startswith("sweep ")]
    assert len(errors) == 1, proc.stderr
    assert errors[0].startswith("Error: cannot write ") and f" to {folder}" in errors[0]
    assert "disk full (ENOSPC" in errors[0]
    return errors[0]


def _assert_nothing_lost(jobs: list[Job], disk: SmallDisk) -> Counter[str]:
    """No job failed or left running; every done job has its file; no temporary file."""
    counts = Counter(j.status.value for j in jobs)
    assert counts["failed"] == 0 and counts["running"] == 0, counts
    assert all(Path(j.output_path).is_file() for j in jobs if j.status == JobStatus.done)
    assert disk.temporaries() == []
    return counts


def test_a_local_render_on_a_full_disk_stops_with_one_line_and_resumes(
        settings, cli_env, small_disk: SmallDisk, tmp_path):
    # Given an output folder on a disk with room for three images (and half of a fourth)
    out = small_disk.root / "outputs"
    env = {**cli_env, "SDFARM_OUTPUT_DIR": str(out)}
    job_file = write_job(tmp_path, JOB.format(n=10))
    small_disk.fill(leave_pages=3 * IMAGE_PAGES + 2)
    # When ten images are rendered here
    proc = _render(env, job_file)
    # Then one line says which folder is full, and no traceback
    jobs = _jobs(settings.database_url)
    line = _assert_one_error_line(proc, Path(jobs[0].output_path).parent)
    assert line.startswith("Error: cannot write images to ")
    # ...the three images written are done; no job failed or is left running
    counts = _assert_nothing_lost(jobs, small_disk)
    assert counts["done"] == 3 and counts["canceled"] == 7
    # When there is space again and the same file is rendered again
    small_disk.free()
    again = _render(env, job_file)
    # Then it renders the seven left and reuses the three
    assert again.returncode == 0, again.stderr
    assert "7 rendered, 3 reused, 0 failed" in again.stderr
    second = max(j.sweep_id for j in jobs) + 1
    latest = [j for j in _jobs(settings.database_url) if j.sweep_id == second]
    assert len(latest) == 10 and all(j.status == JobStatus.done for j in latest)
    _assert_nothing_lost(_jobs(settings.database_url), small_disk)


def test_a_sqlite_database_on_the_full_disk_is_one_line_and_leaves_nothing_running(
        settings, cli_env, small_disk: SmallDisk, tmp_path):
    # Given the database and the output folder on the same small disk, the disk filled up to
    # a little more than the render's own records need
    url = f"sqlite:///{small_disk.root / 'sdfarm.db'}"
    session_factory(url)  # the schema, before the disk fills
    dispose_all()
    env = {**cli_env, "SDFARM_OUTPUT_DIR": str(small_disk.root / "outputs"),
           "SDFARM_DATABASE_URL": url}
    job_file = write_job(tmp_path, JOB.format(n=10))
    small_disk.fill(leave_pages=80)
    # When
    proc = _render(env, job_file)
    # Then one line, no traceback; nothing failed, nothing running, no temporary file
    _assert_one_error_line(proc, small_disk.root)
    jobs = _jobs(url)
    counts = _assert_nothing_lost(jobs, small_disk)
    assert counts["done"] < 10
    # ...and once there is space, the same file completes
    small_disk.free()
    again = _render(env, job_file)
    assert again.returncode == 0, again.stderr
    final = _jobs(url)
    last = max(j.sweep_id for j in final)
    assert [j.status for j in final if j.sweep_id == last] == [JobStatus.done] * 10
    _assert_nothing_lost(final, small_disk)
    dispose_all()


def _worker_state(farm, name: str) -> str | None:
    data = json.loads(farm.sdfarm("status", "--json").stdout)
    return next((w["state"] for w in data["workers"] if w["name"] == name), None)


def test_a_worker_whose_disk_is_full_pauses_fails_nothing_and_resumes_when_there_is_space(
        make_farm, small_disk: SmallDisk, tmp_path):
    # Given a worker whose output folder is on a disk with room for three images
    farm = make_farm(SDFARM_OUTPUT_DIR=str(small_disk.root / "outputs"))
    small_disk.fill(leave_pages=3 * IMAGE_PAGES + 2)
    farm.start_worker("w@test")
    # When a sweep of eight images is submitted
    path = write_job(tmp_path, JOB.format(n=8))
    sweep_id = submit(farm.settings, load_plan(farm.settings, path)).sweep_id
    folder = Path(farm.jobs(sweep_id)[0].output_path).parent
    # Then the worker pauses, and `sdfarm status` says why and where
    wait_until(lambda: (_worker_state(farm, "w@test") or "").startswith("paused"),
               "the worker to pause", farm=farm)
    assert _worker_state(farm, "w@test") == f"paused: disk full ({folder})"
    # ...the three images written are done, the others queued with no attempt counted
    jobs = farm.jobs(sweep_id)
    counts = _assert_nothing_lost(jobs, small_disk)
    assert counts == Counter(done=3, queued=5)
    assert all(j.attempts == 0 for j in jobs if j.status == JobStatus.queued)
    # ...and it stays so: the worker does not spin through the queue
    time.sleep(deadline(2.0))
    assert [(j.status, j.attempts) for j in farm.jobs(sweep_id)] == [
        (j.status, j.attempts) for j in jobs]
    assert _worker_state(farm, "w@test").startswith("paused")
    # When there is space again
    small_disk.free()
    # Then the worker resumes by itself and renders the rest, each image once
    jobs = farm.wait_finished(sweep_id)
    assert [j.status for j in jobs] == [JobStatus.done] * 8
    assert all(j.attempts == 1 for j in jobs)
    _assert_nothing_lost(jobs, small_disk)
    wait_until(lambda: _worker_state(farm, "w@test") == "idle", "the worker to be idle",
               farm=farm)
    assert "pausing: cannot write images to" in (farm.folder / "w@test.log").read_text()


def test_a_paused_worker_still_stops_on_sigterm(make_farm, small_disk: SmallDisk, tmp_path):
    # Given a worker paused on a full disk
    farm = make_farm(SDFARM_OUTPUT_DIR=str(small_disk.root / "outputs"))
    small_disk.fill()
    farm.start_worker("w@test")
    farm.wait_ready("w@test")
    sweep_id = submit(farm.settings, load_plan(farm.settings, write_job(tmp_path, JOB.format(n=2)))
                      ).sweep_id
    wait_until(lambda: (_worker_state(farm, "w@test") or "").startswith("paused"),
               "the worker to pause", farm=farm)
    # When it is told to stop (a warm shutdown waits for the running task: the pause)
    farm.kill("w@test", signal.SIGTERM)
    # Then it exits cleanly, recorded as stopped, its jobs queued with no attempt counted
    assert farm.workers["w@test"].returncode == 0, farm.logs()
    assert _worker_state(farm, "w@test") == "stopped"
    assert [(j.status, j.attempts) for j in farm.jobs(sweep_id)] == [(JobStatus.queued, 0)] * 2
