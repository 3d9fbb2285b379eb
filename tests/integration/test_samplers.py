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
