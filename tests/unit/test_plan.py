"""The Plan of a job file: its images in render order, cut into batches, and cut again over
the images left when a sweep resumes."""

from __future__ import annotations

from pathlib import Path

from sdfarm.scheduler.jobfile import parse_job_file
from sdfarm.scheduler.plan import make_plan

BASE = 'model = "builtin:tiny"\nwidth = 64\nheight = 64\n'


def job_in(folder: Path, body: str):
    return parse_job_file(BASE + body, str(folder / "job.toml"))


def test_a_seed_sweep_plans_one_image_per_seed_in_batches():
    job = parse_job_file('model = "builtin:tiny"\nprompt = "p"\nsteps = 5\nseeds = "1-10"\n', "t.toml")
    plan = make_plan(job, model_hash="0123456789")
    assert plan.images == 10 and plan.total_steps == 50
    assert [len(b) for b in plan.batches] == [4, 4, 2]
    assert [s.seed for s in plan.specs] == list(range(1, 11))
    assert all(s.model_hash == "0123456789" for s in plan.specs)


def test_a_grid_renders_model_outermost_and_batches_only_seeds_and_prompts_together(tmp_path):
    job = job_in(tmp_path, 'prompt = "a {cat|dog}"\nseeds = [1, 2, 3]\nbatch_size = 4\n'
                         '[axes]\nx = { cfg = [4, 8] }\ny = { model = ["m2", "m1"] }\n')
    plan = make_plan(job, None, {"m1": None, "m2": None})
    assert [s.model for s in plan.specs] == ["m1"] * 12 + ["m2"] * 12
    for batch in plan.batches:
        groups = {plan.specs[i].batch_group for i in batch}
        assert len(groups) == 1 and len(batch) <= 4
    assert len(plan.batches) == 2 * 2 * 2, "6 images per (model, cfg): a batch of 4 and one of 2"
    assert len(plan.cells) == plan.images


def test_resuming_cuts_batches_again_over_the_images_left(tmp_path):
    plan = make_plan(job_in(tmp_path, 'prompt = "a cat"\nseeds = "1-8"\nbatch_size = 4\n'))
    assert [len(b) for b in plan.batches] == [4, 4]
    rest = plan.without({0, 2, 5})
    assert rest.batches == ((1, 3, 4, 6), (7,))
    assert rest.specs == plan.specs and rest.cells == plan.cells
