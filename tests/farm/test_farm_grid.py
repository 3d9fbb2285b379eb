"""A farm sweep gets its grid: the worker that ends a sweep with axes writes its grid PNGs and
index.html, once, and writes them again when a ``retry`` completes the sweep later. Real
redis-server, real ``sdfarm worker`` processes (fake renderer), real databases."""

from __future__ import annotations

import re
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import select, update

from sdfarm.config import Settings
from sdfarm.db.engine import session_factory
from sdfarm.db.gridmarks import claim_grid
from sdfarm.db.models import Job, JobStatus, Sweep, utcnow
from sdfarm.db.sweeps import record_plan
from sdfarm.grids.draw import PLACEHOLDER, layout_page
from sdfarm.grids.model import load_grid
from sdfarm.usecases.farm import submit
from sdfarm.usecases.render import load_plan
from tests.conftest import deadline, write_job
from tests.farm.conftest import Farm, wait_until

pytestmark = pytest.mark.farm

#: 3 x 2 cells, one page: every job a batch of its own, so two workers share the last ones.
GRID_JOB = """
name = "farm-grid"
model = "builtin:tiny"
prompt = "a lake"
steps = 4
width = 16
height = 16
seeds = [7]
batch_size = 1
[axes]
x = { cfg = [4, 8, 12] }
y = { steps = [3, 4] }
"""


def pixels(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def grid_writes(farm: Farm, sweep_id: int) -> int:
    """How many times the workers wrote the sweep's grid, from their logs."""
    pattern = re.compile(rf"wrote the grid of sweep {sweep_id}:")
    return sum(len(pattern.findall(p.read_text(errors="replace")))
               for p in farm.folder.glob("*.log"))


def grid_mark(farm: Farm, sweep_id: int):
    with farm.session() as s:
        return s.scalar(select(Sweep.grid_written_at).where(Sweep.id == sweep_id))


def assert_grid_shows(farm: Farm, sweep_id: int) -> dict[int, bool]:
    """Every cell of the grid PNG is its job's image or a grey placeholder; which, by job id."""
    with farm.session() as s:
        (page,) = load_grid(s, sweep_id).pages
    folder = Path(farm.jobs(sweep_id)[0].output_path).parent
    image = pixels(folder / "grid.png")
    layout = layout_page(page)
    assert image.shape[:2] == (layout.height, layout.width)
    shown = {}
    for (col, row), job in page.cells.items():
        x, y = layout.cell_origin(col, row)
        if job.done:
            assert np.array_equal(image[y:y + 16, x:x + 16], pixels(job.path))
            shown[job.job_id] = True
        else:
            assert tuple(image[y + 1, x + 1]) == PLACEHOLDER
            shown[job.job_id] = False
    return shown


def test_the_worker_that_ends_a_sweep_writes_its_grid_once(farm, tmp_path):
    # Given two workers, both consuming, each image long enough for both to get some
    for name in ("w1@test", "w2@test"):
        farm.start_worker(name, SDFARM_RENDERER="fake:0.3")
        farm.wait_ready(name)
    # When a sweep with axes is submitted and watched to its end
    sweep_id = submit(farm.settings, load_plan(farm.settings, write_job(tmp_path, GRID_JOB))).sweep_id
    watched = farm.sdfarm("watch", sweep_id, "--interval", "0.2")
    jobs = farm.wait_finished(sweep_id)
    folder = Path(jobs[0].output_path).parent
    # Then the grid and index.html are in the sweep folder, showing every image
    wait_until(lambda: (folder / "index.html").is_file() and grid_writes(farm, sweep_id),
               "the grid to be written", farm=farm)
    assert sorted(p.name for p in folder.glob("grid*.png")) == ["grid.png"]
    assert all(assert_grid_shows(farm, sweep_id).values())
    assert 'class="missing"' not in (folder / "index.html").read_text()
    # ...and watch said where it is
    assert f"grid: {folder}/index.html" in watched.stdout  # a pipe: the log lines go there
    # ...written by one worker only, and marked with the sweep's newest finish
    assert grid_writes(farm, sweep_id) == 1
    assert grid_mark(farm, sweep_id) == max(j.finished_at for j in jobs)
    assert {j.worker for j in jobs} == {"w1@test", "w2@test"}


def test_a_retry_that_completes_a_sweep_writes_its_grid_again_without_the_canceled_cell(
        farm, tmp_path):
    # Given a sweep with one cell canceled before any worker runs
    sweep_id = submit(farm.settings, load_plan(farm.settings, write_job(tmp_path, GRID_JOB))).sweep_id
    victim = farm.jobs(sweep_id)[-1].id
    farm.sdfarm("cancel", "--job", victim)
    farm.start_worker("w1@test", wait=False)
    # When the sweep ends
    farm.wait_finished(sweep_id)
    wait_until(lambda: grid_writes(farm, sweep_id) == 1, "the first grid", farm=farm)
    folder = Path(farm.jobs(sweep_id)[0].output_path).parent
    # Then its grid shows the canceled cell as a placeholder
    shown = assert_grid_shows(farm, sweep_id)
    assert shown[victim] is False and sum(shown.values()) == 5
    assert (folder / "index.html").read_text().count('class="missing">canceled<') == 1
    first_mark = grid_mark(farm, sweep_id)
    # When the sweep is retried and ends again
    assert "1 job(s) queued again" in farm.sdfarm("retry", sweep_id).stdout
    jobs = farm.wait_finished(sweep_id)
    wait_until(lambda: grid_writes(farm, sweep_id) == 2, "the grid written again", farm=farm)
    # Then the grid is written again, with every image and no placeholder
    assert all(j.status == JobStatus.done for j in jobs)
    assert all(assert_grid_shows(farm, sweep_id).values())
    assert 'class="missing"' not in (folder / "index.html").read_text()
    assert grid_mark(farm, sweep_id) > first_mark


def _finished_sweep(settings: Settings, tmp_path: Path) -> int:
    """A recorded sweep with axes whose jobs are all done (nothing is rendered)."""
    plan = load_plan(settings, write_job(tmp_path, GRID_JOB))
    with session_factory(settings.database_url).begin() as session:
        sweep_id = record_plan(session, plan, settings.output_dir).id
        session.execute(update(Job).where(Job.sweep_id == sweep_id)
                        .values(status=JobStatus.done, finished_at=utcnow()))
    return sweep_id


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_of_workers_claiming_a_finished_sweeps_grid_at_once_exactly_one_wins(
        backend, settings, tmp_path, request):
    if backend == "postgresql":
        settings = settings.with_(database_url=request.getfixturevalue("postgres_url"))
    sweep_id = _finished_sweep(settings, tmp_path)
    factory = session_factory(settings.database_url)
    start = threading.Barrier(8)
    marks = []

    def worker() -> None:
        start.wait(deadline(30))
        with factory.begin() as session:
            marks.append(claim_grid(session, sweep_id))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(deadline(60))
    assert len(marks) == 8 and sum(m is not None for m in marks) == 1
    # A job finishing later (a retry completing the sweep) makes the grid due again, once.
    with factory.begin() as session:
        session.execute(update(Job).where(Job.sweep_id == sweep_id, Job.seq == 0)
                        .values(finished_at=utcnow()))
    with factory.begin() as session:
        assert claim_grid(session, sweep_id) is not None
    with factory.begin() as session:
        assert claim_grid(session, sweep_id) is None
    # ...and never while a job of it is queued or running.
    with factory.begin() as session:
        session.execute(update(Job).where(Job.sweep_id == sweep_id, Job.seq == 1)
                        .values(status=JobStatus.running, finished_at=None))
        session.execute(update(Job).where(Job.sweep_id == sweep_id, Job.seq == 0)
                        .values(finished_at=utcnow()))
    with factory.begin() as session:
        assert claim_grid(session, sweep_id) is None
