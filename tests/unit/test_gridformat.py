"""The grid JSON a sweep stores (``Sweep.axes``): every axis with its labels and values, the
product order, and how many prompts and seeds the product has."""

from __future__ import annotations

from pathlib import Path

from sdfarm.scheduler.jobfile import parse_job_file
from sdfarm.scheduler.plan import make_plan

BASE = 'model = "builtin:tiny"\nwidth = 64\nheight = 64\n'


def job_in(folder: Path, body: str):
    return parse_job_file(BASE + body, str(folder / "job.toml"))


def test_the_sweep_axes_json_holds_every_label_and_value(tmp_path):
    plan = make_plan(job_in(tmp_path, 'prompt = "a cat"\nseeds = [1]\n'
                                      '[axes]\nx = { size = ["64x64", "128x64"] }\ny = { cfg = "4-5 (+0.5)" }\n'))
    grid = plan.grid_json()
    assert grid["order"] == ["prompt", "extra", "z", "y", "x", "seed"]
    assert grid["axes"][0]["values"] == [[64, 64], [128, 64]]
    assert grid["axes"][1]["labels"] == ["CFG: 4", "CFG: 4.5", "CFG: 5"]
    assert (grid["prompts"], grid["seeds"]) == (1, 1)
    assert make_plan(job_in(tmp_path, 'prompt = "a cat"\n')).grid_json() is None
