"""A1111 sampler name -> a diffusers scheduler built from the pipeline's own config."""

from __future__ import annotations

from typing import Any

from sdfarm.samplers import SAMPLERS, canonical_sampler


def make_scheduler(sampler: str, base_config: Any):
    """A fresh scheduler for ``sampler``; ``base_config`` is the model's original config.

    Always built from the original config: building from a previously swapped scheduler would
    carry its options (Karras sigmas, SDE) into the next sampler.
    """
    import diffusers

    entry = SAMPLERS[canonical_sampler(sampler)]
    cls = getattr(diffusers, entry.scheduler_class)
    return cls.from_config(base_config, **entry.options)
