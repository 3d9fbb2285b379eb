"""Every A1111 sampler name maps to a diffusers scheduler that really renders."""

from __future__ import annotations

import numpy as np
import pytest

from sdfarm.samplers import SAMPLERS
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


def test_karras_variants_are_different_schedules_of_the_same_sampler(settings, tiny_model):
    renderer = process_renderer(settings)
    spec = RenderSpec(model="builtin:tiny", prompt="a cat", seed=1, steps=6, width=64, height=64)
    plain, karras = (np.asarray(renderer.render([spec.replace(sampler=name)], model_config=None,
                                                allow_pickle=False, on_step=lambda: None)[0], dtype=int)
                     for name in ("DPM++ 2M", "DPM++ 2M Karras"))
    assert np.abs(plain - karras).max() > 0
    pipe, _ = renderer.pipeline("builtin:tiny", None, False)
    assert type(pipe.scheduler).__name__ == "DPMSolverMultistepScheduler"
    assert pipe.scheduler.config.use_karras_sigmas is True


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
