"""Every model family through the farm: one Celery worker renders a grid of all the tiny
built-in families, each image identical to the same job rendered locally."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sdfarm.db.models import JobStatus
from sdfarm.modelref import BUILTIN_FAMILIES
from sdfarm.usecases.local import render_sweep_locally
from sdfarm.usecases.record import record
from sdfarm.usecases.render import load_plan
from tests.conftest import write_job
from tests.farm.conftest import Farm
from tests.integration.test_families_render import GRID, TINY, pixels

pytestmark = pytest.mark.farm


def test_one_worker_renders_every_family_as_a_local_render_does(make_farm, settings, tmp_path):
    from sdfarm.worker.builtin import ensure_builtin

    for name in TINY:  # built here once, so the worker's first job does not wait on a build
        ensure_builtin(name, settings.model_dir)
    farm = make_farm(SDFARM_RENDERER="diffusers", SDFARM_LEASE_SECONDS="60")
    path = write_job(tmp_path, GRID.replace('seeds = "1-2"', "seeds = [3]"))
    farm.start_worker("gpu0@test")
    sweep_id = int(farm.sdfarm("submit", path).stdout.strip())
    jobs = farm.wait_finished(sweep_id, timeout=240)
    assert [j.status for j in jobs] == [JobStatus.done] * len(TINY), farm.logs()
    assert {(j.model, j.family, j.prediction) for j in jobs} == {
        (f"builtin:{n}", *BUILTIN_FAMILIES[n]) for n in TINY}
    local = settings.with_(database_url=f"sqlite:///{tmp_path / 'local.db'}",
                           output_dir=tmp_path / "local")
    local_id = record(local, load_plan(local, path))
    assert render_sweep_locally(local, local_id).done == len(TINY)
    here = {j.key: j for j in Farm(local, farm.env, tmp_path).jobs(local_id)}
    for job in jobs:
        assert np.array_equal(pixels(job.output_path), pixels(here[job.key].output_path)), job.model
        assert Path(job.output_path).is_file()
