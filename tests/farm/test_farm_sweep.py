"""A sweep through the farm as a user runs it: ``sdfarm submit`` (which never imports torch),
two ``sdfarm worker`` processes rendering builtin:tiny with the real diffusers pipeline,
``sdfarm watch`` until the end, ``sdfarm status`` afterwards."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sdfarm.db.models import JobStatus
from sdfarm.usecases.local import render_sweep_locally
from sdfarm.usecases.record import record
from sdfarm.usecases.render import load_plan
from tests.conftest import deadline, write_job
from tests.farm.conftest import Farm, wait_until

pytestmark = pytest.mark.farm

JOB = """
name = "farm-cats"
model = "builtin:tiny"
prompt = "a {black|white} cat on a {sofa|roof}"
sampler = "Euler a"
steps = 3
width = 32
height = 32
seeds = "1-10"
batch_size = 4
"""

#: Runs ``sdfarm submit`` in this interpreter and reports what it imported.
SUBMIT_AND_REPORT_IMPORTS = """
import sys
from sdfarm.cli.main import cli
try:
    cli.main(["submit", sys.argv[1]], prog_name="sdfarm")
except SystemExit as exc:
    if exc.code:
        raise
print("imported:", sorted(m for m in ("torch", "diffusers", "transformers") if m in sys.modules),
      file=sys.stderr)
"""


def pixels(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.int16)


def test_a_sweep_through_two_workers_renders_every_image_once_identical_to_a_local_render(
        make_farm, settings, tiny_model, tmp_path):
    farm = make_farm(SDFARM_RENDERER="diffusers", SDFARM_LEASE_SECONDS="60")
    path = write_job(tmp_path, JOB)
    # Given two workers with the real pipeline
    farm.start_worker("gpu0@test", wait=False)
    farm.start_worker("gpu1@test", wait=False)
    # When the 40-image sweep is submitted (in a process that must not import torch) and watched
    submitted = subprocess.run([sys.executable, "-c", SUBMIT_AND_REPORT_IMPORTS, str(path)],
                               env=farm.env, capture_output=True, text=True, timeout=deadline(120))
    assert submitted.returncode == 0, submitted.stderr
    assert "imported: []" in submitted.stderr
    sweep_id = int(submitted.stdout.strip())
    watched = farm.sdfarm("watch", sweep_id, "--interval", "0.2")
    # Then watch ends with the sweep, and every job is done exactly once, on disk
    assert f"sweep {sweep_id}: 40/40 done, 0 failed, 0 canceled" in watched.stdout
    jobs = farm.jobs(sweep_id)
    assert len(jobs) == 40 and all(j.status == JobStatus.done and j.attempts == 1 for j in jobs)
    assert len({j.output_path for j in jobs}) == 40 and all(Path(j.output_path).is_file() for j in jobs)
    assert {j.worker for j in jobs} == {"gpu0@test", "gpu1@test"}
    # ...and each image is identical to the same job rendered locally, in this process
    local = settings.with_(database_url=f"sqlite:///{tmp_path / 'local.db'}",
                           output_dir=tmp_path / "local")
    local_id = record(local, load_plan(local, path))
    assert render_sweep_locally(local, local_id).done == 40
    local_jobs = Farm(local, farm.env, tmp_path).jobs(local_id)
    assert [(j.seed, j.prompt) for j in local_jobs] == [(j.seed, j.prompt) for j in jobs]
    for farmed, here in zip(jobs, local_jobs):
        assert farmed.key == here.key
        assert np.array_equal(pixels(farmed.output_path), pixels(here.output_path)), farmed.id
    # ...and status shows both workers alive, holding the model, with their work counted
    def status() -> dict | None:
        data = json.loads(farm.sdfarm("status", "--json").stdout)
        done = sum(w["jobs_done"] for w in data["workers"])
        return data if done == 40 else None  # the last heartbeat may still be on its way
    data = wait_until(status, "the workers' heartbeats to count 40 jobs", 20, farm)
    assert data["sweeps"][0]["id"] == sweep_id and data["sweeps"][0]["done"] == 40
    workers = {w["name"]: w for w in data["workers"]}
    assert set(workers) == {"gpu0@test", "gpu1@test"}
    assert all(w["state"] == "idle" and w["loaded_model"] == "builtin:tiny" and w["device"] == "cpu"
               for w in workers.values())
