"""Seeds in a job file: ``[1, 5, 9]``, ``"1000-1015"``, ``"1, 5, 9"``, ``7`` or ``{random = N}``.

Every seed is resolved to an int at planning time and stored; random seeds are drawn from the
recorded sweep seed, so planning again gives the same seeds. Pure.

A seed written twice (``[1, 2, 2]``, overlapping ranges) is rendered once: two jobs with one key
are the same image twice. ``duplicates_warning`` says so, for the commands to print; random
seeds are drawn distinct, so ``{random = N}`` always gives N images.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Callable
from typing import Any

from sdfarm.params import PARAMS, BadValue

#: Random seeds are drawn from 32 bits, as AUTOMATIC1111 does, so they can be typed back into it.
RANDOM_SEED_LIMIT = 2**32 - 1
#: Most seeds a ``seeds`` value may stand for, in all (counted while parsing, before any list
#: is built: 200 ranges of a million seeds must be a message, not gigabytes).
MAX_SEEDS = 1_000_000
#: How many duplicated seeds a warning names before "and N more".
_SHOWN_DUPLICATES = 5

_RANGE = re.compile(r"^\s*(\d+)\s*-\s*(\d+)\s*$")
_SEED = PARAMS["seed"]

ALLOWED = 'a list of integers ([1, 5, 9]), an inclusive range "1000-1015", or { random = N }'

#: Builds the exception for a problem with the seeds (the job file reader adds file and key).
Fail = Callable[[str], Exception]


def resolve_seeds(value: Any, sweep_seed: int, *, fail: Fail = ValueError) -> list[int]:
    """The distinct seeds ``value`` stands for, in written order (a repeat is dropped), drawing
    random ones from ``sweep_seed``. Every seed, however it is written, passes the parameter
    table's rule for a seed."""
    return list(dict.fromkeys(written_seeds(value, sweep_seed, fail=fail)))


def written_seeds(value: Any, sweep_seed: int, *, fail: Fail = ValueError) -> list[int]:
    """The seeds ``value`` stands for, repeats included; at most :data:`MAX_SEEDS`."""
    if isinstance(value, bool):
        raise fail(f"must be {ALLOWED}, got a boolean")
    if isinstance(value, int):
        value = [value]
    if isinstance(value, list):
        if not value:
            raise fail(f"must not be empty; allowed: {ALLOWED}")
        if len(value) > MAX_SEEDS:
            raise fail(f"lists {len(value):,} seeds; at most {MAX_SEEDS:,} in all")
        return [_checked(item, fail) for item in value]
    if isinstance(value, str):
        return _parse_seed_string(value, fail)
    if isinstance(value, dict):
        if set(value) != {"random"}:
            raise fail(f"a seeds table takes only 'random' (as in {{ random = 8 }}), got {sorted(value)}")
        count = value["random"]
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_SEEDS:
            raise fail(f"random must be a count from 1 to {MAX_SEEDS}, got {count!r}")
        return _draw_distinct(count, sweep_seed)
    raise fail(f"must be {ALLOWED}, got {type(value).__name__}")


def _draw_distinct(count: int, sweep_seed: int) -> list[int]:
    # A repeat is drawn again: the same seeds as plain draws whenever none repeats (so sweeps
    # planned before stay resumable), and N images for N draws always.
    rng = random.Random(sweep_seed)
    drawn: dict[int, None] = {}
    while len(drawn) < count:
        drawn[rng.randint(0, RANDOM_SEED_LIMIT)] = None
    return list(drawn)


def duplicates_warning(seeds: list[int]) -> str | None:
    """What to tell the user about seeds written more than once (``written_seeds``); ``None``
    when every seed is written once."""
    counts = Counter(seeds)
    if len(counts) == len(seeds):
        return None
    repeated = [(seed, n) for seed, n in counts.items() if n > 1]
    said = ", ".join(f"{seed} appears {_times(n)}" for seed, n in repeated[:_SHOWN_DUPLICATES])
    if len(repeated) > _SHOWN_DUPLICATES:
        said += f" (and {len(repeated) - _SHOWN_DUPLICATES:,} more seeds)"
    return (f"{said}; duplicates render the same image, so each seed is rendered once "
            f"({len(counts):,} seeds, not {len(seeds):,})")


def _times(n: int) -> str:
    return "twice" if n == 2 else f"{n:,} times"


def _checked(seed: object, fail: Fail) -> int:
    try:
        return _SEED.check(seed)  # type: ignore[return-value]
    except BadValue:
        # -1 is "random" in A1111 and ComfyUI; here a seed is a seed, so say how to draw one.
        hint = "; for a random seed (A1111's -1) write seeds = { random = 1 }" if seed == -1 else ""
        raise fail(f"seeds must be {_SEED.allowed}, got {seed!r}{hint}") from None


def _parse_seed_string(text: str, fail: Fail) -> list[int]:
    seeds: list[int] = []
    total = 0
    for part in text.split(","):
        part = part.strip()
        if not part:
            raise fail(f"empty item in {text!r}; allowed: {ALLOWED}")
        if part.isdigit():
            total += 1
            _bounded(total, part, fail)
            seeds.append(_checked(int(part), fail))
            continue
        if part == "-1":
            _checked(-1, fail)  # refused, with the way to a random seed
        m = _RANGE.match(part)
        if not m:
            raise fail(f"{part!r} is not a seed or a range like \"1000-1015\"")
        start, stop = _checked(int(m[1]), fail), _checked(int(m[2]), fail)
        if stop < start:
            raise fail(f"range {part!r} goes down; write it low-high, e.g. \"{stop}-{start}\"")
        total += stop - start + 1
        _bounded(total, part, fail)
        seeds.extend(range(start, stop + 1))
    return seeds


def _bounded(total: int, part: str, fail: Fail) -> None:
    if total > MAX_SEEDS:
        raise fail(f"stands for more than {MAX_SEEDS:,} seeds (at least {total:,} up to "
                   f"{_short(part)}); at most {MAX_SEEDS:,} in all")


def _short(part: str) -> str:
    return repr(part if len(part) <= 40 else part[:37] + "...")
