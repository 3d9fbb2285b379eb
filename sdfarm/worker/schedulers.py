"""A1111 sampler + schedule type -> a diffusers scheduler built from the pipeline's own config."""

from __future__ import annotations

import functools
from typing import Any

from sdfarm.samplers import AUTOMATIC, SAMPLERS, scheduler_options, split_sampler


def make_scheduler(sampler: str, base_config: Any, schedule: str = AUTOMATIC):
    """A fresh scheduler for ``sampler`` with ``schedule``; ``base_config`` is the model's
    original config.

    Always built from the original config: building from a previously swapped scheduler would
    carry its options (Karras sigmas, SDE, trailing spacing) into the next sampler.
    """
    import diffusers

    base, named = split_sampler(sampler)
    if named is not None and schedule == AUTOMATIC:
        # A spec built by hand with an old combined name ("DPM++ 2M Karras"): planning always
        # splits them, but a caller may not have planned.
        sampler, schedule = base, named
    class_name, options = scheduler_options(sampler, schedule)
    if SAMPLERS[sampler].eta == "ancestral":
        return ancestral_with_eta().from_config(base_config, **options)
    return getattr(diffusers, class_name).from_config(base_config, **options)


@functools.cache
def ancestral_with_eta():
    """diffusers' Euler ancestral scheduler with A1111's eta (a class made on first use, so
    that importing this module imports no diffusers).

    An ancestral step goes from sigma_from down to sigma_down deterministically, then adds
    fresh noise of size sigma_up; k-diffusion's ``get_ancestral_step`` scales sigma_up by eta:
    ``sigma_up = min(sigma_to, eta * sqrt(sigma_to^2 (sigma_from^2 - sigma_to^2) / sigma_from^2))``,
    ``sigma_down = sqrt(sigma_to^2 - sigma_up^2)``. At eta 1 (``eta = None``: the sampler's
    own) this is diffusers' step, which then runs unchanged; at eta 0 it is the plain Euler
    step and draws no noise.
    """
    import torch
    from diffusers import EulerAncestralDiscreteScheduler
    from diffusers.schedulers.scheduling_euler_ancestral_discrete import (
        EulerAncestralDiscreteSchedulerOutput,
    )
    from diffusers.utils.torch_utils import randn_tensor

    class EulerAncestralWithEta(EulerAncestralDiscreteScheduler):
        #: Set per forward pass by the renderer; ``None`` is diffusers' own eta of 1.
        ancestral_eta: float | None = None

        def step(self, model_output, timestep, sample, generator=None, return_dict=True):
            if self.ancestral_eta is None or self.ancestral_eta == 1:
                return super().step(model_output, timestep, sample, generator=generator,
                                    return_dict=return_dict)
            if self.step_index is None:
                self._init_step_index(timestep)
            sigma_from = self.sigmas[self.step_index]
            sigma_to = self.sigmas[self.step_index + 1]
            x = sample.to(torch.float32)
            if self.config.prediction_type == "v_prediction":
                denoised = model_output * (-sigma_from / (sigma_from**2 + 1) ** 0.5) + (
                    x / (sigma_from**2 + 1))
            else:
                denoised = x - sigma_from * model_output
            full_up = (sigma_to**2 * (sigma_from**2 - sigma_to**2) / sigma_from**2) ** 0.5
            sigma_up = torch.minimum(sigma_to, self.ancestral_eta * full_up)
            sigma_down = (sigma_to**2 - sigma_up**2) ** 0.5
            x = x + (x - denoised) / sigma_from * (sigma_down - sigma_from)
            if self.ancestral_eta > 0:
                noise = randn_tensor(model_output.shape, dtype=model_output.dtype,
                                     device=model_output.device, generator=generator)
                x = x + noise * sigma_up
            self._step_index += 1
            prev = x.to(model_output.dtype)
            if not return_dict:
                return prev, denoised
            return EulerAncestralDiscreteSchedulerOutput(prev_sample=prev,
                                                         pred_original_sample=denoised)

    return EulerAncestralWithEta
