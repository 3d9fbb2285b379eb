"""The grid viewer's layout: any varying parameter on X, Y or pages, no two jobs in a cell."""

from __future__ import annotations

from pathlib import Path

import pytest

from sdfarm.grids.model import GridJob
from sdfarm.grids.view import GridAxisError, build_view, default_choice, view_axes
from sdfarm.scheduler.gridformat import GridAxis
from sdfarm.spec import RenderSpec


def job(job_id: int, *, x: int = 0, y: int = 0, status: str = "done", **spec) -> GridJob:
    fields = {"model": "/models/m.safetensors", "prompt": "a lake", "seed": 1, **spec}
    return GridJob(job_id=job_id, status=status, path=Path(f"/out/{job_id}.png"),
                   spec=RenderSpec(**fields), prompt=0, seed=0, x=x, y=y, z=None, extra=())


CFGS, STEPS = (7.0, 4.5), (10, 20, 30)
AXES = (GridAxis("x", "cfg", ("CFG: 7", "CFG: 4.5")),
        GridAxis("y", "steps", ("Steps: 10", "Steps: 20", "Steps: 30")))


def cfg_steps_two_seeds() -> list[GridJob]:
    """A 2 x 3 cfg x steps sweep with seeds 42 and 43, in plan order (y, x, seed)."""
    jobs = []
    for yi, steps in enumerate(STEPS):
        for xi, cfg in enumerate(CFGS):
            for seed in (42, 43):
                jobs.append(job(len(jobs) + 1, x=xi, y=yi, cfg=cfg, steps=steps, seed=seed))
    return jobs


def cell_specs(view, page: int) -> dict[tuple[str, str], int]:
    return {(view.columns[c], view.rows[r]): cell.job_id
            for (c, r), cell in view.pages[page].cells.items()}


def test_every_varying_parameter_is_an_axis_with_table_labels_in_plan_order():
    axes = view_axes(AXES, cfg_steps_two_seeds())
    assert [(a.name, a.slot) for a in axes] == [("cfg", "x"), ("steps", "y"), ("seed", None)]
    assert axes[2].title == "Seed" and axes[2].labels == ("Seed: 42", "Seed: 43")
    assert default_choice(axes) == ("cfg", "steps", None)
    # Not in the file: plan order, not sorted order; labels as the parameter table formats.
    jobs = [job(1, cfg=9.0), job(2, cfg=3.0), job(3, cfg=6.5)]
    (cfg,) = view_axes((), jobs)
    assert cfg.labels == ("CFG: 9", "CFG: 3", "CFG: 6.5")


def test_a_parameter_left_off_the_choices_splits_pages_and_says_what_each_fixes():
    jobs = cfg_steps_two_seeds()
    view = build_view(view_axes(AXES, jobs), jobs, x="cfg", y="steps", page=None)
    assert view.columns == ("CFG: 7", "CFG: 4.5") and len(view.rows) == 3
    assert [p.fixed for p in view.pages] == [("Seed: 42",), ("Seed: 43",)]
    assert view.cells == len(jobs)
    assert view.shared == ("Model: m.safetensors", "Prompt: a lake", "Sampler: Euler a")
    by_id = {j.job_id: j.spec for j in jobs}
    for page, seed in ((0, 42), (1, 43)):
        for (column, row), job_id in cell_specs(view, page).items():
            spec = by_id[job_id]
            assert (f"CFG: {spec.cfg:g}", f"Steps: {spec.steps}", spec.seed) == (column, row, seed)


def test_seed_on_x_and_cfg_on_pages_moves_every_job():
    jobs = cfg_steps_two_seeds()
    view = build_view(view_axes(AXES, jobs), jobs, x="seed", y="steps", page="cfg")
    assert view.columns == ("Seed: 42", "Seed: 43")
    assert [p.fixed for p in view.pages] == [("CFG: 7",), ("CFG: 4.5",)]
    by_id = {j.job_id: j.spec for j in jobs}
    for (column, row), job_id in cell_specs(view, 1).items():
        assert (by_id[job_id].cfg, f"Seed: {by_id[job_id].seed}") == (4.5, column)


def test_swapping_x_and_y_transposes_the_cells():
    jobs = cfg_steps_two_seeds()
    axes = view_axes(AXES, jobs)
    view = build_view(axes, jobs, x="cfg", y="steps", page="seed")
    swapped = build_view(axes, jobs, x="steps", y="cfg", page="seed")
    assert swapped.columns == view.rows and swapped.rows == view.columns
    assert {(r, c): cell.job_id for (c, r), cell in view.pages[0].cells.items()} == \
        {k: cell.job_id for k, cell in swapped.pages[0].cells.items()}


def test_no_axis_at_all_puts_every_job_on_pages_of_one_cell():
    jobs = cfg_steps_two_seeds()
    view = build_view(view_axes(AXES, jobs), jobs, x=None, y=None, page=None)
    assert view.columns == ("",) and view.rows == ("",)
    assert len(view.pages) == len(jobs) and view.cells == len(jobs)


def test_a_parameter_that_follows_an_axis_is_not_offered_twice_nor_splits_pages():
    # A Prompt S/R axis changes the prompt: the prompt is that axis, not another one.
    stored = (GridAxis("x", "prompt_sr", ("lake", "sea")),)
    jobs = [job(1, x=0, prompt="a lake"), job(2, x=1, prompt="a sea")]
    axes = view_axes(stored, jobs)
    assert [a.name for a in axes] == ["prompt_sr"]
    assert len(build_view(axes, jobs, x="prompt_sr", y=None, page=None).pages) == 1


def test_two_jobs_alike_in_every_parameter_go_to_separate_pages():
    jobs = [job(1, cfg=5.0), job(2, cfg=6.0), job(3, cfg=5.0)]  # a prompt listed twice
    view = build_view(view_axes((), jobs), jobs, x="cfg", y=None, page=None)
    assert sorted(c.job_id for p in view.pages for c in p.cells.values()) == [1, 2, 3]
    assert len(view.pages) == 2


def test_an_axis_the_sweep_does_not_vary_is_refused_naming_the_allowed_ones():
    jobs = cfg_steps_two_seeds()
    axes = view_axes(AXES, jobs)
    with pytest.raises(GridAxisError, match=r"'sampler' is not an axis.*allowed: cfg, steps, seed"):
        build_view(axes, jobs, x="sampler", y=None, page=None)
    with pytest.raises(GridAxisError, match="must be different axes"):
        build_view(axes, jobs, x="cfg", y="cfg", page=None)


def test_cells_carry_status():
    jobs = [job(1, cfg=5.0, status="queued"), job(2, cfg=6.0)]
    view = build_view(view_axes((), jobs), jobs, x="cfg", y=None, page=None)
    cells = view.pages[0].cells
    assert (cells[(0, 0)].status, cells[(0, 0)].done, cells[(1, 0)].done) == ("queued", False, True)


def test_a_sweep_without_axes_shows_its_first_varying_parameter_on_x():
    jobs = [job(1, seed=3), job(2, seed=4), job(3, seed=5)]
    axes = view_axes((), jobs)
    assert default_choice(axes) == ("seed", None, None)
    view = build_view(axes, jobs, x="seed", y=None, page=None)
    assert view.columns == ("Seed: 3", "Seed: 4", "Seed: 5") and len(view.pages) == 1
    assert default_choice(view_axes((), [job(1)])) == (None, None, None)
