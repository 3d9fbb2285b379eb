"""Seeds in a job file: ``[1, 5, 9]``, ``"1000-1015"``, ``"1, 5, 9"``, ``7`` or ``{random = N}``.

Every seed is resolved to an int at planning time and stored; random seeds are drawn from the
recorded sweep seed, so planning again gives the same seeds. Pure.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from typing import Any

from sdfarm.params import PARAMS, BadValue

#: Random seeds are drawn from 32 bits, as AUTOMATIC1111 does, so they can be typed back into it.
RANDOM_SEED_LIMIT = 2**32 - 1
#: Most seeds one ``{random = N}`` or range may produce.
MAX_SEEDS = 1_000_000

_RANGE = re.compile(r"^\s*(\d+)\s*-\s*(\d+)\s*$")
_SEED = PARAMS["seed"]

ALLOWED = 'a list of integers ([1, 5, 9]), an inclusive range "1000-1015", or { random = N }'

#: Builds the exception for a problem with the seeds (the job file reader adds file and key).
Fail = Callable[[str], Exception]


def resolve_seeds(value: Any, sweep_seed: int, *, fail: Fail = ValueError) -> list[int]:
    """The seeds ``value`` stands for, drawing random ones from ``sweep_seed``. Every seed,
    however it is written, passes the parameter table's rule for a seed."""
    if isinstance(value, bool):
        raise fail(f"must be {ALLOWED}, got a boolean")
    if isinstance(value, int):
        value = [value]
    if isinstance(value, list):
        if not value:
            raise fail(f"must not be empty; allowed: {ALLOWED}")
        return [_checked(item, fail) for item in value]
    if isinstance(value, str):
        return _parse_seed_string(value, fail)
    if isinstance(value, dict):
        if set(value) != {"random"}:
            raise fail(f"a seeds table takes only 'random' (as in {{ random = 8 }}), got {sorted(value)}")
        count = value["random"]
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_SEEDS:
            raise fail(f"random must be a count from 1 to {MAX_SEEDS}, got {count!r}")
        rng = random.Random(sweep_seed)
        return [rng.randint(0, RANDOM_SEED_LIMIT) for _ in range(count)]
    raise fail(f"must be {ALLOWED}, got {type(value).__name__}")


def _checked(seed: object, fail: Fail) -> int:
    try:
        return _SEED.check(seed)  # type: ignore[return-value]
    except BadValue:
        # -1 is "random" in A1111 and ComfyUI; here a seed is a seed, so say how to draw one.
        hint = "; for a random seed (A1111's -1) write seeds = { random = 1 }" if seed == -1 else ""
        raise fail(f"seeds must be {_SEED.allowed}, got {seed!r}{hint}") from None


def _parse_seed_string(text: str, fail: Fail) -> list[int]:
    seeds: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            raise fail(f"empty item in {text!r}; allowed: {ALLOWED}")
        if part.isdigit():
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
        if stop - start + 1 > MAX_SEEDS:
            raise fail(f"range {part!r} has {stop - start + 1} seeds; at most {MAX_SEEDS}")
        seeds.extend(range(start, stop + 1))
    return seeds
