"""A disk that fills up under the pass writer (a real 2 MB tmpfs): the images written before
the fault are done, the rest go back to the queue without an attempt, no temporary file is
left, and the jobs render once there is space again. Temporary files a killed write left are
removed by the next writer of their folder."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sdfarm.db.models import JobStatus
from sdfarm.errors import DiskFault
from sdfarm.usecases.record import record
from sdfarm.usecases.render import load_plan
from sdfarm.worker.batch import render_batch
from sdfarm.worker.render import FakeRenderer
from tests.conftest import write_job
from tests.diskfill import SmallDisk, small_disk  # noqa: F401 (a fixture)
from tests.integration.test_render import JOB, jobs_of

#: Pages a 64x64 noise PNG with its text chunks takes on a tmpfs (12.9 kB: four pages).
IMAGE_PAGES = 4


def recorded(settings, seeds: str, batch_size: int):
    path = write_job(settings.output_dir.parent,
                     JOB.format(seeds=seeds, batch_size=batch_size, sampler="Euler"))
    sweep_id = record(settings, load_plan(settings, path))
    return sweep_id, jobs_of(settings, sweep_id)


def test_a_full_disk_mid_pass_keeps_the_images_written_and_gives_the_rest_back(
        settings, small_disk: SmallDisk):
    # Given three passes of two, and a disk with room for three images (half a page short of
    # a fourth): the fourth image's write fails in the middle of the second pass
    settings = settings.with_(output_dir=small_disk.root / "outputs")
    sweep_id, jobs = recorded(settings, "[1, 2, 3, 4, 5, 6]", batch_size=2)
    small_disk.fill(leave_pages=3 * IMAGE_PAGES + 2)
    # When
    with pytest.raises(DiskFault) as raised:
        render_batch([j.id for j in jobs], settings, renderer=FakeRenderer(0))
    # Then it says which folder and why
    folder = str(Path(jobs[0].output_path).parent)
    assert raised.value.folder == folder and raised.value.errno_name == "ENOSPC"
    assert f"cannot write images to {folder}: disk full" in str(raised.value)
    # ...the three images written are done with their files, the third although its pass
    # neighbour failed to write; the others are queued again, no attempt counted, no file
    jobs = jobs_of(settings, sweep_id)
    assert [j.status for j in jobs] == [JobStatus.done] * 3 + [JobStatus.queued] * 3
    assert all(Path(j.output_path).is_file() for j in jobs[:3])
    assert all(j.attempts == 0 and not Path(j.output_path).exists() for j in jobs[3:])
    assert small_disk.temporaries() == []
    # When there is space again, the same call renders the rest
    small_disk.free()
    outcome = render_batch([j.id for j in jobs], settings, renderer=FakeRenderer(0))
    # Then
    assert outcome.done == [j.id for j in jobs[3:]]
    jobs = jobs_of(settings, sweep_id)
    assert all(j.status == JobStatus.done and Path(j.output_path).is_file() for j in jobs)
    assert small_disk.temporaries() == []


def test_a_disk_full_before_the_first_image_fails_no_job(settings, small_disk: SmallDisk):
    # Given a disk without a free page
    settings = settings.with_(output_dir=small_disk.root / "outputs")
    sweep_id, jobs = recorded(settings, "[1, 2, 3, 4]", batch_size=4)
    small_disk.fill()
    # When / Then
    with pytest.raises(DiskFault):
        render_batch([j.id for j in jobs], settings, renderer=FakeRenderer(0))
    jobs = jobs_of(settings, sweep_id)
    assert [(j.status, j.attempts) for j in jobs] == [(JobStatus.queued, 0)] * 4
    assert small_disk.temporaries() == []


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_temporary_file_a_killed_write_left_is_removed_when_its_job_renders_again(settings):
    # Given the temporary file a worker of this host left when it was killed mid-write of
    # the first image (its name says whose it was), and one of a write still going on
    sweep_id, jobs = recorded(settings, "[1, 2]", batch_size=2)
    first = Path(jobs[0].output_path)
    first.parent.mkdir(parents=True)
    from sdfarm.files import _host

    stale = first.with_name(f".{first.name}.{_dead_pid()}@{_host()}.tmp")
    stale.write_bytes(b"\x89PNG half an image")
    live = first.with_name(f".{first.name}.1@{_host()}.tmp")  # pid 1 is alive
    live.write_bytes(b"\x89PNG being written")
    # When the job is rendered again
    outcome = render_batch([j.id for j in jobs], settings, renderer=FakeRenderer(0))
    # Then the stale one is gone, the live one untouched, the image done
    assert len(outcome.done) == 2 and first.is_file()
    assert not stale.exists() and live.exists()


def test_a_sqlite_database_that_is_full_is_a_disk_fault_of_its_folder(tmp_path):
    # Given a real "database or disk is full" from SQLite (a page limit stands in for the disk)
    from sqlalchemy import create_engine
    from sqlalchemy.exc import OperationalError

    from sdfarm.db.engine import disk_fault_of

    url = f"sqlite:///{tmp_path / 'tiny.db'}"
    engine = create_engine(url)
    with pytest.raises(OperationalError) as raised, engine.begin() as connection:
        connection.exec_driver_sql("PRAGMA max_page_count = 3")
        connection.exec_driver_sql("CREATE TABLE t (b BLOB)")
        for _ in range(10):
            connection.exec_driver_sql("INSERT INTO t VALUES (zeroblob(4000))")
    engine.dispose()
    # When / Then it is a disk fault of the database's folder, in one line
    fault = disk_fault_of(raised.value, url)
    assert fault is not None and fault.folder == str(tmp_path) and fault.errno_name == "ENOSPC"
    assert str(fault).startswith(f"cannot write the database tiny.db to {tmp_path}: disk full")
    # ...and not when the database is a server's (a worker retries those later)
    assert disk_fault_of(raised.value, "postgresql://h/db") is None
