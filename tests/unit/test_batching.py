"""Render order and batches: model outermost, then runs of specs that differ only in prompt and
seed, cut at the batch size."""

from __future__ import annotations

from sdfarm.scheduler.batching import make_batches, order_specs
from sdfarm.spec import RenderSpec

BASE = RenderSpec(model="builtin:tiny", prompt="a cat", seed=1, width=64, height=64)


def test_specs_are_ordered_model_outermost_and_stably():
    specs = [BASE.replace(model="m2", seed=1), BASE.replace(model="m1", seed=2),
             BASE.replace(model="m2", seed=3), BASE.replace(model="m1", seed=4)]
    assert [specs[i].seed for i in order_specs(specs)] == [2, 4, 1, 3]


def test_batches_hold_specs_differing_only_in_prompt_and_seed_up_to_batch_size():
    specs = [BASE.replace(seed=s) for s in range(5)] + [BASE.replace(seed=9, steps=30)]
    batches = make_batches(specs, range(len(specs)), 2)
    assert batches == [[0, 1], [2, 3], [4], [5]]
