"""A1111 sampler + schedule type -> a diffusers scheduler built from the pipeline's own config."""

from __future__ import annotations

from typing import Any

from sdfarm.samplers import AUTOMATIC, scheduler_options, split_sampler


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
    return getattr(diffusers, class_name).from_config(base_config, **options)
