"""Every A1111 sampler name maps to a diffusers scheduler that really renders, and each
schedule type reaches the scheduler as its option."""

from __future__ import annotations

import numpy as np
import pytest

from sdfarm.samplers import LEGACY_COMBINED, SAMPLERS
from sdfarm.spec import RenderSpec
from sdfarm.worker.batch import process_renderer


@pytest.mark.parametrize("sampler", list(SAMPLERS))
def test_each_sampler_renders_a_finite_image(settings, tiny_model, sampler):
    renderer = process_renderer(settings)
    spec = RenderSpec(model="builtin:tiny", prompt="a cat", seed=1, sampler=sampler, steps=3,
                      width=64, height=64)
    [image] = renderer.render([spec], model_config=None, allow_pickle=False, on_step=lambda: None)
    pixels = np.asarray(image)
    assert pixels.shape == (64, 64, 3) and pixels.std() > 0


def test_karras_is_a_different_schedule_of_the_same_sampler(settings, tiny_model):
    renderer = process_renderer(settings)
    spec = RenderSpec(model="builtin:tiny", prompt="a cat", seed=1, steps=6, width=64, height=64,
                      sampler="DPM++ 2M")
    plain, karras = (np.asarray(renderer.render([spec.replace(schedule=schedule)], model_config=None,
                                                allow_pickle=False, on_step=lambda: None)[0], dtype=int)
                     for schedule in ("Automatic", "Karras"))
    assert np.abs(plain - karras).max() > 0
    pipe, _ = renderer.pipeline("builtin:tiny", None, False)
    assert type(pipe.scheduler).__name__ == "DPMSolverMultistepScheduler"
    assert pipe.scheduler.config.use_karras_sigmas is True


@pytest.mark.parametrize("schedule, option, value", [
    ("Exponential", "use_exponential_sigmas", True), ("Beta", "use_beta_sigmas", True),
    ("SGM Uniform", "timestep_spacing", "trailing"),
])
def test_each_schedule_reaches_the_scheduler_built_from_the_models_own_config(
        settings, tiny_model, schedule, option, value):
    from sdfarm.worker.schedulers import make_scheduler

    renderer = process_renderer(settings)
    _, base_config = renderer.pipeline("builtin:tiny", None, False)
    scheduler = make_scheduler("Euler", base_config, schedule)
    assert scheduler.config[option] == value
    # built from the original config: nothing of another schedule is carried over
    assert make_scheduler("Euler", base_config).config[option] != value


def test_every_old_combined_name_builds_the_scheduler_it_built_before(settings, tiny_model):
    from sdfarm.worker.schedulers import make_scheduler

    _, base_config = process_renderer(settings).pipeline("builtin:tiny", None, False)
    for combined, (sampler, schedule) in LEGACY_COMBINED.items():
        scheduler = make_scheduler(sampler, base_config, schedule)
        assert type(scheduler).__name__ == SAMPLERS[sampler].scheduler_class
        assert scheduler.config.use_karras_sigmas is True
        # and the combined name, given alone, means the same
        assert dict(make_scheduler(combined, base_config).config) == dict(scheduler.config)


def test_dpm_sde_step_noise_comes_from_each_images_own_seed_not_its_neighbours(settings, tiny_model):
    # Given DPM++ SDE, whose step noise comes from Brownian trees rather than the generators
    renderer = process_renderer(settings)
    base = RenderSpec(model="builtin:tiny", prompt="a cat", seed=11, sampler="DPM++ SDE",
                      steps=4, width=64, height=64)

    def first_of(*seeds: int):
        images = renderer.render([base.replace(seed=s) for s in seeds], model_config=None,
                                 allow_pickle=False, on_step=lambda: None)
        return np.asarray(images[0], dtype=int)

    # When seed 11 renders beside two different neighbours, and twice alone
    beside_12, beside_99 = first_of(11, 12), first_of(11, 99)
    # Then it is the same image each time (up to the low bits a batch may change)
    assert np.abs(beside_12 - beside_99).max() <= 1
    assert np.array_equal(first_of(11), first_of(11))
