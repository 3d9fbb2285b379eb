"""What a batch is, decided here once. Pure.

Expensive switches go outermost (model, then size and sampler, then the rest), so a worker
loads a model once and a run of cells shares a scheduler; then runs of specs that differ only
in prompt and seed (the same ``RenderSpec.batch_group``) are cut into batches of at most
``batch_size`` images: one forward pass, one Celery task. The database records each job's
batch (``Job.batch_index``), the broker carries one batch per message, and the worker renders
a planned batch as one pass: nobody downstream groups again.
"""

from __future__ import annotations

from collections.abc import Sequence

from sdfarm.spec import RenderSpec


def order_specs(specs: Sequence[RenderSpec], groups: Sequence[tuple] | None = None) -> list[int]:
    """Indices of ``specs`` in render order; stable, so equal-cost specs keep the file's order.

    The batch group lists the shared parameters most expensive switch first (the model: a
    reload costs seconds; then the size: a new latent shape; then the sampler), so sorting by
    it both orders by cost and puts each batch's images next to each other."""
    groups = groups if groups is not None else [s.batch_group for s in specs]
    return sorted(range(len(specs)), key=groups.__getitem__)


def make_batches(specs: Sequence[RenderSpec], order: Sequence[int], batch_size: int,
                 groups: Sequence[tuple] | None = None) -> list[list[int]]:
    """Cut the ordered indices into batches of specs sharing everything but prompt and seed.
    ``groups`` are the specs' batch groups when the caller has them already."""
    batches: list[list[int]] = []
    current: list[int] = []
    group: tuple | None = None
    for i in order:
        g = groups[i] if groups is not None else specs[i].batch_group
        if current and (g != group or len(current) >= batch_size):
            batches.append(current)
            current = []
        current.append(i)
        group = g
    if current:
        batches.append(current)
    return batches
