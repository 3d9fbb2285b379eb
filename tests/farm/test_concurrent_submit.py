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
