"""Ordering and batching. Pure.

Expensive switches go outermost (model, then size and sampler, then the rest), so a worker
loads a model once and a run of cells shares a scheduler; then runs of specs that differ only
in prompt and seed are cut into batches of at most ``batch_size`` images: one forward pass,
one Celery task.
"""

from __future__ import annotations

from collections.abc import Sequence

from sdfarm.spec import RenderSpec


def _cost_order(spec: RenderSpec) -> tuple:
    # Model first (a reload costs seconds), then size (a new latent shape), then the sampler.
    return (spec.model, spec.model_hash or "", spec.width, spec.height, spec.sampler,
            spec.steps, float(spec.cfg), spec.clip_skip, spec.negative_prompt)


def order_specs(specs: Sequence[RenderSpec]) -> list[int]:
    """Indices of ``specs`` in render order; stable, so equal-cost specs keep the file's order."""
    return sorted(range(len(specs)), key=lambda i: _cost_order(specs[i]))


def make_batches(specs: Sequence[RenderSpec], order: Sequence[int], batch_size: int) -> list[list[int]]:
    """Cut the ordered indices into batches of specs sharing everything but prompt and seed."""
    batches: list[list[int]] = []
    current: list[int] = []
    group: tuple | None = None
    for i in order:
        g = specs[i].batch_group
        if current and (g != group or len(current) >= batch_size):
            batches.append(current)
            current = []
        current.append(i)
        group = g
    if current:
        batches.append(current)
    return batches
