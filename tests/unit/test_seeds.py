"""Seeds in a job file resolved to integers: lists, ranges, single seeds, and random seeds
drawn from the sweep seed."""

from __future__ import annotations

from sdfarm.scheduler.seeds import resolve_seeds


def test_seed_forms_resolve_to_integers():
    assert resolve_seeds([3, 1], 0) == [3, 1]
    assert resolve_seeds("1000-1003", 0) == [1000, 1001, 1002, 1003]
    assert resolve_seeds("1, 5, 7-8", 0) == [1, 5, 7, 8]
    assert resolve_seeds(42, 0) == [42]


def test_seed_zero_is_a_seed_not_a_request_for_a_random_one():
    assert resolve_seeds([0], 99) == [0]


def test_random_seeds_come_from_the_sweep_seed_so_planning_again_gives_the_same_seeds():
    first = resolve_seeds({"random": 8}, 1234)
    assert first == resolve_seeds({"random": 8}, 1234)
    assert first != resolve_seeds({"random": 8}, 1235)
    assert len(set(first)) == 8 and all(0 <= s < 2**32 for s in first)
