"""Recording a large sweep (issue 13, item C): the jobs go in chunk by chunk (COPY on
PostgreSQL), memory stays flat, and the sweep is still all or nothing: one transaction, so a
half-recorded sweep is never visible and never dispatched."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest
from sqlalchemy import func, select

import sdfarm.db.sweeps as sweeps
from sdfarm.db.engine import get_engine, session_factory
from sdfarm.db.models import Job, JobStatus, Sweep
from sdfarm.scheduler.jobfile import parse_job_file
from sdfarm.scheduler.plan import make_plan
from sdfarm.usecases.record import record

#: As `sdfarm render` records: a farm submit would make a second recording of queued jobs
#: wait for the first's (sdfarm.db.waiting) instead of queueing them.
LOCAL = sweeps.Executor("local", "test-host", 1)

GRID = ('model = "builtin:tiny"\nprompt = "a {{cat|dog}}"\nseeds = "{seeds}"\nbatch_size = 3\n'
        'max_images = 1000000\n[axes]\nx = {{ cfg = [4, 8] }}\ny = {{ steps = [3, 2] }}\n')


@pytest.fixture(params=["sqlite", "postgresql"])
def db_settings(request, settings):
    if request.param == "sqlite":
        return settings
    return settings.with_(database_url=request.getfixturevalue("postgres_url"))


def plan_of(tmp_path, seeds="1-9"):
    return make_plan(parse_job_file(GRID.format(seeds=seeds), str(tmp_path / "grid.toml")))


def jobs_of(settings, sweep_id) -> list[Job]:
    with session_factory(settings.database_url)() as session:
        return list(session.scalars(select(Job).where(Job.sweep_id == sweep_id).order_by(Job.seq)))


def test_a_sweep_recorded_in_many_chunks_holds_every_job_as_planned(db_settings, tmp_path, monkeypatch):
    monkeypatch.setattr(sweeps, "RECORD_CHUNK", 7)  # 72 jobs: ten full chunks and a partial one
    plan = plan_of(tmp_path)
    sweep_id = record(db_settings, plan, executor=LOCAL)
    jobs = jobs_of(db_settings, sweep_id)
    assert [j.seq for j in jobs] == list(range(72))
    assert [j.key for j in jobs] == list(plan.keys)
    assert [(j.seed, j.cfg, j.steps, j.prompt) for j in jobs] == [
        (s.seed, s.cfg, s.steps, s.prompt) for s in plan.specs]
    assert [(j.grid_x, j.grid_y, j.grid_prompt, j.grid_seed) for j in jobs] == [
        (c.x, c.y, c.prompt, c.seed) for c in plan.cells]
    by_batch: dict[int, list[int]] = {}
    for j in jobs:
        by_batch.setdefault(j.batch_index, []).append(j.seq)
    assert [tuple(by_batch[n]) for n in sorted(by_batch)] == list(plan.batches)
    assert all(j.status == JobStatus.queued and j.created_at is not None for j in jobs)
    # Files are numbered by grid position: every number once, in the sweep's folder.
    assert sorted(Path(j.output_path).name.split("-")[0] for j in jobs) == [
        f"{n:05d}" for n in range(72)]
    assert all(Path(j.output_path).parent.name.endswith(f"-{sweep_id}") for j in jobs)


def test_resuming_across_chunks_reuses_the_done_images_and_batches_the_rest(db_settings, tmp_path, monkeypatch):
    monkeypatch.setattr(sweeps, "RECORD_CHUNK", 5)
    plan = plan_of(tmp_path)
    first = jobs_of(db_settings, record(db_settings, plan, executor=LOCAL))
    done = first[::4]  # every fourth image rendered, in several chunks
    folder = tmp_path / "rendered"
    folder.mkdir()
    with session_factory(db_settings.database_url).begin() as session:
        for j in done:
            path = folder / f"{j.seq}.png"
            path.write_bytes(b"png")
            row = session.get(Job, j.id)
            row.status, row.output_path = JobStatus.done, str(path)
    again = jobs_of(db_settings, record(db_settings, plan, executor=LOCAL))
    reused = [j.seq for j in again if j.status == JobStatus.done]
    assert reused == [j.seq for j in done]
    assert all(j.batch_index == -1 for j in again if j.status == JobStatus.done)
    assert {j.batch_index for j in again if j.status == JobStatus.queued} == set(
        range(len(plan.without(set(reused)).batches)))


def test_a_failure_after_some_chunks_were_written_leaves_no_sweep_and_no_job(db_settings, tmp_path, monkeypatch):
    monkeypatch.setattr(sweeps, "RECORD_CHUNK", 4)
    plan = plan_of(tmp_path)
    get_engine(db_settings.database_url)
    factory = session_factory(db_settings.database_url)

    def place_then_fail(source, target):
        raise OSError("disk gone")

    with pytest.raises(OSError, match="disk gone"):
        with factory.begin() as session:
            reuse = {60: sweeps.ReusedImage(1, str(tmp_path / "x.png"), None, None, None)}
            sweeps.record_plan(session, plan.without(reuse), db_settings.output_dir,
                               reuse=reuse, place=place_then_fail)  # image 60: 15 chunks in
    with factory() as session:
        assert session.scalar(select(func.count()).select_from(Job)) == 0
        assert session.scalar(select(func.count()).select_from(Sweep)) == 0


def test_recording_fifty_thousand_jobs_keeps_memory_flat(db_settings, tmp_path):
    plan = plan_of(tmp_path, seeds="1-6250")  # 8 cells x 6,250 seeds
    get_engine(db_settings.database_url)
    tracemalloc.start()
    try:
        sweep_id = record(db_settings, plan, executor=LOCAL)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    with session_factory(db_settings.database_url)() as session:
        count = session.scalar(select(func.count()).where(Job.sweep_id == sweep_id))
    assert count == plan.images == 50_000
    # One chunk of rows and the keys (16 bytes each); a row dict per job took ~100 MB here.
    assert peak < 30 * 2**20, peak
