"""Seeds in a job file resolved to integers: lists, ranges, single seeds, and random seeds
drawn from the sweep seed."""

from __future__ import annotations

import random
import tracemalloc

import pytest

from sdfarm.errors import JobFileError
from sdfarm.scheduler.jobfile import parse_job_file
from sdfarm.scheduler.seeds import MAX_SEEDS, duplicates_warning, resolve_seeds, written_seeds


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


# Huge inputs (issue 13, item C): the total is bounded while parsing, before lists are built.


def test_many_large_ranges_are_refused_at_the_bound_before_any_list_is_built():
    text = ", ".join(f"{i * 10**6}-{i * 10**6 + 10**6 - 1}" for i in range(200))  # 2 * 10^8
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=r"more than 1,000,000 seeds \(at least 2,000,000 "
                                             r"up to '1000000-1999999'\); at most 1,000,000"):
            resolve_seeds(text, 0)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # One range's list at most (a million ints: ~40 MB), never the 200 ranges (~8 GB).
    assert peak < 80 * 2**20, peak


def test_single_seeds_count_towards_the_bound_too():
    with pytest.raises(ValueError, match="at most 1,000,000 in all"):
        resolve_seeds(f"1-{MAX_SEEDS}, 5", 0)
    assert len(resolve_seeds(f"1-{MAX_SEEDS}", 0)) == MAX_SEEDS


def test_the_bound_is_one_error_line_naming_the_file_and_key():
    job = f'model = "m"\nprompt = "p"\nseeds = "{", ".join(["0-999999"] * 200)}"\n'
    with pytest.raises(JobFileError) as caught:
        parse_job_file(job, "big.toml")
    message = str(caught.value)
    assert message.startswith("big.toml: seeds: stands for more than 1,000,000 seeds")
    assert "\n" not in message and len(message) < 200  # the 3.9 kB value is not echoed


def test_a_seed_written_twice_is_rendered_once_in_written_order():
    assert resolve_seeds([1, 2, 2], 0) == [1, 2]
    assert resolve_seeds("5-8, 6-9, 1", 0) == [5, 6, 7, 8, 9, 1]
    assert written_seeds([1, 2, 2], 0) == [1, 2, 2]


def test_duplicate_seeds_warn_once_naming_them():
    assert duplicates_warning([1, 2, 3]) is None
    assert duplicates_warning([1, 2, 2]) == (
        "2 appears twice; duplicates render the same image, so each seed is rendered once "
        "(2 seeds, not 3)")
    many = duplicates_warning(written_seeds("1-10, 1-10, 1", 0))
    assert many.startswith("1 appears 3 times, 2 appears twice, ") and "(and 5 more seeds)" in many


def test_random_seeds_are_drawn_distinct_and_as_before_when_none_repeats():
    rng = random.Random(7)
    plain = [rng.randint(0, 2**32 - 1) for _ in range(1000)]
    assert resolve_seeds({"random": 1000}, 7) == plain  # no repeat among them: unchanged
    drawn = resolve_seeds({"random": 200_000}, 7)  # ~5 repeats among plain draws of 2^32
    assert len(set(drawn)) == 200_000
