"""Sampler, schedule type and eta on builtin:tiny: every pair the tables offer renders, each
control changes the pixels where it should and not where it should not, and a grid over
schedule x sampler loads the model once."""

from __future__ import annotations

import numpy as np
import pytest

from sdfarm.samplers import SAMPLERS
from sdfarm.scheduler.jobfile import parse_job_file
from sdfarm.scheduler.plan import make_plan
from sdfarm.spec import RenderSpec
from sdfarm.worker.render import DiffusersRenderer

SPEC = RenderSpec(model="builtin:tiny", prompt="a cat", seed=1, steps=4, width=64, height=64)
NEW = ("DPM++ 3M SDE", "DPM++ 2M SDE Heun", "LCM", "DDPM")


@pytest.fixture(scope="module")
def renderer(model_dir, tiny_model):
    """One renderer for the module (it counts its model loads)."""
    from sdfarm.config import Settings
    from tests.conftest import TEST_THREADS

    settings = Settings(database_url="sqlite://", model_dir=model_dir, device="cpu",
                        threads=TEST_THREADS)
    return DiffusersRenderer(settings)


def render(renderer, *specs: RenderSpec) -> list[np.ndarray]:
    images = renderer.render(list(specs), model_config=None, allow_pickle=False,
                             on_step=lambda: None)
    return [np.asarray(im, dtype=int) for im in images]


def test_given_a_grid_of_every_schedule_by_every_sampler_then_each_cell_renders_with_one_load(
        renderer):
    # Given a job file whose grid holds every pair the tables allow (two grids: the samplers
    # that run every schedule, and those that run only the spacing ones)
    full = [n for n, s in SAMPLERS.items() if len(s.schedules) == 5]
    spacing = [n for n in SAMPLERS if n not in full]
    cells = 0
    for samplers, schedules in ((full, "Automatic, Karras, Exponential, SGM Uniform, Beta"),
                                (spacing, "Automatic, SGM Uniform")):
        names = ", ".join(f'"{n}"' for n in samplers)
        job = parse_job_file(
            'model = "builtin:tiny"\nprompt = "a cat"\nsteps = 4\nwidth = 64\nheight = 64\n'
            f'seeds = [1]\nbatch_size = 1\n[axes]\nx = {{ sampler = [{names}] }}\n'
            f'y = {{ schedule = "{schedules}" }}\n', "grid.toml")
        plan = make_plan(job)
        # When every batch of the plan is rendered
        for batch in plan.batches:
            specs = [plan.specs[i] for i in batch]
            for pixels in render(renderer, *specs):
                # Then every cell is a finite, non-flat 64x64 image
                assert pixels.shape == (64, 64, 3) and pixels.std() > 0, specs[0]
            cells += 1
    assert cells == sum(len(s.schedules) for s in SAMPLERS.values())
    # And the model was loaded once for all of them
    assert renderer.loads == {"builtin:tiny": 1}


def test_eta_changes_ddim_and_leaves_a_deterministic_sampler_as_it_was(renderer):
    [ddim] = render(renderer, SPEC.replace(sampler="DDIM"))
    [ddim_eta] = render(renderer, SPEC.replace(sampler="DDIM", eta=1.0))
    [ddim_zero] = render(renderer, SPEC.replace(sampler="DDIM", eta=0.0))
    assert np.abs(ddim - ddim_eta).max() > 0
    assert np.array_equal(ddim, ddim_zero)  # 0 is DDIM's own
    [euler] = render(renderer, SPEC.replace(sampler="Euler"))
    [euler_eta] = render(renderer, SPEC.replace(sampler="Euler", eta=1.0))
    assert np.array_equal(euler, euler_eta)


def test_eta_scales_the_fresh_noise_of_each_euler_a_step(renderer):
    # Given Euler a with eta left to the sampler (1, diffusers' own step)
    [own] = render(renderer, SPEC.replace(sampler="Euler a"))
    # When eta is 1 explicitly, 0.5 and 0
    [one] = render(renderer, SPEC.replace(sampler="Euler a", eta=1.0))
    [half] = render(renderer, SPEC.replace(sampler="Euler a", eta=0.5))
    [zero] = render(renderer, SPEC.replace(sampler="Euler a", eta=0.0))
    [euler] = render(renderer, SPEC.replace(sampler="Euler"))
    # Then 1 is diffusers' step exactly, 0.5 is another image, and 0 (no fresh noise) is the
    # plain Euler step
    assert np.array_equal(one, own)
    assert np.abs(half - own).max() > 0 and np.abs(half - zero).max() > 0
    assert np.abs(zero - euler).max() <= 1
    # and the eta of one pass does not stay with the scheduler for the next
    [again] = render(renderer, SPEC.replace(sampler="Euler a"))
    assert np.array_equal(again, own)


def test_the_karras_schedule_differs_from_automatic(renderer):
    for sampler in ("Euler", "DPM++ 2M"):
        [automatic] = render(renderer, SPEC.replace(sampler=sampler))
        [karras] = render(renderer, SPEC.replace(sampler=sampler, schedule="Karras"))
        assert np.abs(automatic - karras).max() > 0, sampler


def test_a_combined_name_renders_bit_identically_to_its_split_form(renderer):
    head = 'model = "builtin:tiny"\nprompt = "a cat"\nsteps = 4\nwidth = 64\nheight = 64\n'
    combined = parse_job_file(head + 'sampler = "DPM++ 2M SDE Karras"\n', "a.toml").base
    split = parse_job_file(head + 'sampler = "DPM++ 2M SDE"\nschedule = "Karras"\n', "b.toml").base
    [a] = render(renderer, combined.replace(seed=1))
    [b] = render(renderer, split.replace(seed=1))
    assert np.array_equal(a, b)


@pytest.mark.parametrize("sampler", NEW)
def test_each_new_sampler_renders_deterministically_twice(renderer, sampler):
    spec = SPEC.replace(sampler=sampler)
    [first] = render(renderer, spec)
    [other] = render(renderer, SPEC.replace(sampler="Euler"))  # the scheduler is swapped between
    [second] = render(renderer, spec)
    assert np.array_equal(first, second)
    assert np.abs(first - other).max() > 0


def test_the_new_sde_variants_differ_from_dpm_2m_sde(renderer):
    # Under 15 steps diffusers lowers the order of the last two steps, so at 4 steps the third
    # order is never reached: compare at 16.
    spec = SPEC.replace(steps=16)
    [sde] = render(renderer, spec.replace(sampler="DPM++ 2M SDE"))
    for sampler in ("DPM++ 2M SDE Heun", "DPM++ 3M SDE"):
        [variant] = render(renderer, spec.replace(sampler=sampler))
        assert np.abs(sde - variant).max() > 0, sampler
