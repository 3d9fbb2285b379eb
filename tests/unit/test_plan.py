"""The Plan of a job file: its images in render order, cut into batches, and cut again over
the images left when a sweep resumes."""

from __future__ import annotations

import dataclasses
import tracemalloc
from pathlib import Path

from sdfarm.scheduler.batching import make_batches, order_specs
from sdfarm.scheduler.expand import expand_job
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


# Scale (issue 13, item C): a plan holds rows x seeds, not one object per image, and reads
# exactly as the fully built product sorted and cut did.


def _built(job):
    """The plan as it was built before: every image, stably sorted, cut into batches."""
    expansion = expand_job(job, None, {"m1": None, "m2": None})
    specs, cells = expansion.specs, expansion.cells
    order = order_specs(specs)
    specs = [specs[i] for i in order]
    return specs, [cells[i] for i in order], make_batches(specs, range(len(specs)), job.batch_size)


def test_rows_times_seeds_read_exactly_as_the_built_product(tmp_path):
    job = job_in(tmp_path, 'prompt = "a {cat|dog}"\nseeds = "1-7"\nbatch_size = 3\n'
                           '[axes]\nx = { cfg = [4, 8, 4.5] }\ny = { model = ["m2", "m1"] }\n'
                           'z = { steps = [3, 2] }\n')
    plan = make_plan(job, None, {"m1": None, "m2": None})
    specs, cells, batches = _built(job)
    assert len(plan.rows) == 2 * 3 * 2 * 2 and plan.images == len(specs) == 168
    assert list(plan.specs) == specs and [plan.specs[i] for i in range(168)] == specs
    assert list(plan.cells) == cells and plan.cells[100] == cells[100]
    assert [tuple(b) for b in batches] == list(plan.batches)
    assert [plan.batches[n] for n in range(len(plan.batches))] == list(plan.batches)
    assert list(plan.keys) == [s.key for s in specs] and plan.keys[-1] == specs[-1].key
    assert plan.total_steps == sum(s.steps for s in specs)
    of = list(plan.batch_indices())
    assert all(of[i] == n for n, batch in enumerate(plan.batches) for i in batch)
    rest = plan.without({0, 5, 6, 100})
    assert list(rest.batches) == [tuple(b) for b in make_batches(
        specs, [i for i in range(168) if i not in {0, 5, 6, 100}], 3)]
    assert [i for i, b in enumerate(rest.batch_indices()) if b == -1] == [0, 5, 6, 100]


def test_a_seed_axis_plans_one_image_per_row(tmp_path):
    job = job_in(tmp_path, 'prompt = "p"\nbatch_size = 2\n[axes]\nx = { seed = [5, 6, 7] }\n')
    plan = make_plan(job)
    assert [s.seed for s in plan.specs] == [5, 6, 7] and len(plan.rows) == 3
    assert list(plan.batches) == [(0, 1), (2,)]
    assert [dataclasses.astuple(c)[:2] for c in plan.cells] == [(0, 0)] * 3


def test_a_million_image_plan_is_a_hundred_rows_and_a_few_megabytes(tmp_path):
    job = job_in(tmp_path, 'prompt = "p"\nseeds = "1-10000"\nmax_images = 1000000\n'
                           '[axes]\nx = { cfg = "1-25 [100]" }\n')
    tracemalloc.start()
    try:
        plan = make_plan(job)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert plan.images == 1_000_000 and len(plan.rows) == 100
    assert len(plan.batches) == 250_000 and plan.batches[-1] == (999_996, 999_997, 999_998, 999_999)
    assert plan.specs[999_999].seed == 10_000 and plan.specs[999_999].cfg == 25
    # Built as before, the plan held a million specs, cells and keys: 725 MB, 16 s.
    assert peak < 8 * 2**20, peak


def test_the_forecast_row_by_row_counts_as_image_by_image(tmp_path):
    from sdfarm.scheduler.forecast import forecast

    job = job_in(tmp_path, 'prompt = "a {cat|dog}"\nseeds = "1-7"\nbatch_size = 3\n'
                           '[axes]\nx = { cfg = [4, 8] }\ny = { steps = [3, 2] }\n'
                           'z = { model = ["m2", "m1"] }\n')
    plan = make_plan(job, None, {"m1": "h1", "m2": "h2"})
    reused = {0, 1, 2, 50, 111}
    rates = {("h1", 64, 64): 0.5}
    todo = [s for i, s in enumerate(plan.specs) if i not in reused]
    outlook = forecast(plan, reused, rates)
    assert (outlook.images, outlook.reused, outlook.to_render) == (112, 5, 107)
    assert outlook.steps_to_render == sum(s.steps for s in todo)
    assert outlook.unmeasured_images == sum(1 for s in todo if s.model_hash != "h1")
    assert outlook.estimate_seconds == round(sum(0.5 * s.steps for s in todo if s.model_hash == "h1"), 3)
    assert outlook.batches == len(plan.without(reused).batches)


def test_keys_built_from_a_row_text_are_each_image_s_own_key_even_when_a_prompt_holds_the_mark(tmp_path):
    from sdfarm.scheduler.plan import _MARK

    for prompt in ("p", f"p {_MARK}"):
        plan = make_plan(job_in(tmp_path, f'prompt = "{prompt}"\nseeds = "1-5, 100"\n'
                                           '[axes]\nx = { cfg = [4, 8] }\n'))
        assert list(plan.keys) == [s.key for s in plan.specs] and len(set(plan.keys)) == 12
