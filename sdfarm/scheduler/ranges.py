"""A1111's X/Y/Z-plot ranges: ``1-5``, stepped ``1-10 (+2)`` / ``10-1 (-3)`` and counted
``1-10 [4]``, expanded exactly (Decimal steps on the written digits, Fraction spacing). Pure."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from decimal import Decimal
from fractions import Fraction

FailProblem = Callable[[str], Exception]

#: Most values one axis may have (a typo like "1-1000000" fails here, not in the database).
MAX_AXIS_VALUES = 10_000
#: Decimals kept in float values, so "0.1-0.3 (+0.1)" gives 0.3, not 0.30000000000000004.
FLOAT_DECIMALS = 4
AT_MOST = f"an axis may have at most {MAX_AXIS_VALUES}"

_NUM = r"\d+(?:\.\d*)?|\.\d+"
_ITEM = re.compile(
    rf"(?P<start>{_NUM})(?:\s*-\s*(?P<end>{_NUM})"
    rf"(?:\s*\(\s*(?P<step>[+-]?\s*(?:{_NUM}))\s*\)|\s*\[\s*(?P<count>[+-]?\d+)\s*\])?)?"
)


def expand_range(item: str, is_float: bool, syntax: str, fail_problem: FailProblem) -> list:
    """The values one item stands for: a value, ``1-5``, ``1-10 (+2)`` or ``1-10 [4]``
    (``syntax``: how the parameter's values are written, for the error)."""
    m = _ITEM.fullmatch(item)
    if m is None:
        raise fail_problem(f"{item!r} is not a value or a range; {syntax}")
    for name in ("start", "end", "step"):
        if m[name] and "." in m[name] and not is_float:
            raise fail_problem(f"{item!r} has a fractional number; {syntax}")
    start = Decimal(m["start"])
    if m["end"] is None:
        return [_number(start, is_float)]
    end = Decimal(m["end"])
    if m["count"] is not None:
        return _counted(item, start, end, int(m["count"]), is_float, fail_problem)
    step = Decimal(m["step"].replace(" ", "")) if m["step"] else Decimal(1 if end >= start else -1)
    if step == 0:
        raise fail_problem(f"range {item!r} has step 0; use a step like (+1) or (-1)")
    if start != end and (end > start) != (step > 0):
        sign = "positive" if end > start else "negative"
        raise fail_problem(f"range {item!r} has a step going the wrong way; a range from "
                           f"{m['start']} to {m['end']} needs a {sign} step")
    n = int((end - start) / step) + 1  # exact: Decimal arithmetic on the written digits
    if n > MAX_AXIS_VALUES:
        raise fail_problem(f"range {item!r} has {n} values; {AT_MOST}")
    return [_number(start + i * step, is_float) for i in range(n)]


def _counted(item: str, start: Decimal, end: Decimal, count: int, is_float: bool,
             fail_problem: FailProblem) -> list:
    if count < 1:
        raise fail_problem(f"range {item!r} asks for {count} values; "
                           "the count in [N] must be at least 1")
    if count > MAX_AXIS_VALUES:
        raise fail_problem(f"range {item!r} has {count} values; {AT_MOST}")
    if count == 1:
        return [_number(start, is_float)]
    lo, span = Fraction(start), Fraction(end) - Fraction(start)
    points = [lo + span * i / (count - 1) for i in range(count)]
    if is_float:
        return [round(float(p), FLOAT_DECIMALS) for p in points]
    # Half up (not Python's half-to-even), so "1-4 [3]" gives 1, 3, 4 the same way every time.
    values = [math.floor(p + Fraction(1, 2)) for p in points]
    if len(set(values)) < count:
        raise fail_problem(f"range {item!r} asks for {count} values but only "
                           f"{abs(int(end - start)) + 1} integers lie from {start} to {end}")
    return values


def _number(value: Decimal, is_float: bool) -> int | float:
    return round(float(value), FLOAT_DECIMALS) if is_float else int(value)
