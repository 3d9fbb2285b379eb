"""Job file -> RenderSpecs: one spec per image, every value resolved. Pure.

Order of the product: prompts (outermost), then seeds (innermost); ordering for rendering is
``batching.py``'s business, not this module's.
"""

from __future__ import annotations

from sdfarm.scheduler.jobfile import JobFile
from sdfarm.scheduler.seeds import resolve_seeds
from sdfarm.spec import RenderSpec


def expand(job: JobFile, model_hash: str | None = None) -> list[RenderSpec]:
    """Every image ``job`` describes, in the documented product order."""
    base = RenderSpec(
        model=job.model,
        model_hash=model_hash,
        prompt=job.prompt,
        negative_prompt=job.negative_prompt,
        seed=0,
        sampler=job.sampler,
        steps=job.steps,
        cfg=job.cfg,
        width=job.width,
        height=job.height,
        clip_skip=job.clip_skip,
    )
    seeds = resolve_seeds(job.seeds, job.sweep_seed)
    return [base.replace(seed=seed) for seed in seeds]
