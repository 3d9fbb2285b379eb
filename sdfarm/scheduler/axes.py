"""Grid axes in AUTOMATIC1111's X/Y/Z-plot value syntax, resolved to typed values. Pure.

A job file's ``[axes]`` table names up to three grid dimensions (``x``, ``y``, ``z``) and any
number of ``[[axes.extra]]`` axes, each varying exactly one parameter::

    x = { cfg = "4-12 (+2)" }
    y = { steps = [10, 20, 30, 40] }

Values are a TOML list, or a string of comma-separated items, each a value, an inclusive range
``1-5``, a stepped range ``1-10 (+2)`` / ``10-1 (-3)`` or a counted range ``1-10 [4]``.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from sdfarm.params import PARAMS, BadValue, Param, describe
from sdfarm.samplers import split_sampler
from sdfarm.scheduler.loras import MAX_WEIGHT, LoraError, check_name, format_weight, set_weight
from sdfarm.scheduler.ranges import AT_MOST, FLOAT_DECIMALS, MAX_AXIS_VALUES, expand_range
from sdfarm.spec import RenderSpec
from sdfarm.suggest import did_you_mean

#: Axes that are not one parameter of the table: their place in the list of axes (the
#: table's ``axis_rank``) and what they take.
_COMPOSITE: dict[str, tuple[int, str]] = {
    "size": (65, 'width x height, as "512x768"'),
    "prompt_sr": (100, "Prompt S/R: the first value is searched in the prompt, each value "
                       "replaces it"),
    # issue 11: LoRA. Both rewrite the prompt's <lora:...> tags (sdfarm.scheduler.loras).
    "lora_weight": (5, f'{{ name = "NAME", values = ... }}: the weight of LoRA NAME, numbers '
                       f"from -{MAX_WEIGHT:g} to {MAX_WEIGHT:g}"),
    "lora": (6, 'LoRA names, each "name" (weight 1) or "name:weight", or "none"'),
}
#: The weight of a lora_weight axis, checked like a float parameter of the table.
_LORA_WEIGHT = Param("lora_weight", "float", 1.0, "LoRA weight", "LoRA weight",
                     low=-MAX_WEIGHT, high=MAX_WEIGHT)
#: The lora axis value that adds no LoRA (the base model's column of a grid).
NO_LORA = "none"
#: Axes that rewrite the prompt, applied to it in this order when a cell has several.
PROMPT_AXES = ("prompt_sr", "lora", "lora_weight")
#: What each axis parameter varies, the most used first; the error for an unknown parameter
#: lists them.
AXIS_PARAMS: dict[str, str] = {
    name: text for _, name, text in sorted(
        [(p.axis_rank, p.name, p.axis_description) for p in PARAMS.ranked("axis_rank")]
        + [(rank, name, text) for name, (rank, text) in _COMPOSITE.items()])
}

#: The grid dimensions, in order; ``extra`` axes only multiply the number of grids, like z.
SLOTS = ("x", "y", "z", "extra")


#: Builds the exception for a problem at a job file key ("axes.x.cfg"), or for a problem alone.
Fail = Callable[[str, str], Exception]
FailProblem = Callable[[str], Exception]

_SIZE = re.compile(r"(\d+)\s*[x×]\s*(\d+)", re.IGNORECASE)


@dataclass(frozen=True)
class Axis:
    """One varied parameter, its resolved values and the grid label of each value."""

    #: "x", "y", "z", "extra1", "extra2", ...
    slot: str
    param: str
    #: int for steps/seed/width/height/clip_skip, float for cfg/eta, str for sampler (as
    #: written: a combined name sets the schedule too)/schedule/model/negative_prompt/
    #: prompt_sr, (width, height) for size.
    values: tuple
    #: One per value: "Steps: 10", "CFG: 7.5", "Sampler: Euler a"; Prompt S/R shows the text.
    labels: tuple[str, ...]

    @property
    def key(self) -> str:
        """Where the axis is in the job file: "axes.x.cfg", "axes.extra[2].seed"."""
        table = f"extra[{self.slot[5:]}]" if self.slot.startswith("extra") else self.slot
        return f"axes.{table}.{self.param}"


def axis_label(param: str, value: Any) -> str:
    """The grid label of one value; a Prompt S/R label is the replacement text, as in A1111."""
    if param == "prompt_sr":
        return value
    if param == "lora_weight":
        if isinstance(value, tuple):
            return f"{value[0]}: {format_weight(value[1])}"
        return f"LoRA weight: {format_weight(value)}"
    if param == "lora":
        return f"LoRA: {value.removesuffix(':1')}"
    if param == "size":
        return f"Size: {value[0]}x{value[1]}"
    if param == "model":
        # A repo id or a path: its last part is what tells grid columns apart.
        shown = PurePosixPath(value.replace("\\", "/")).name or value
    elif param == "negative_prompt":
        shown = value or "(none)"
    elif param == "vae":  # issue 11: the file's name; "" is the model's own VAE
        shown = PurePosixPath(value.replace("\\", "/")).name if value else "(model's own)"
    else:
        shown = PARAMS[param].format(value)
    return f"{PARAMS[param].label}: {shown}"


def parse_axes(table: object, fail: Fail) -> list[Axis]:
    """The axes of a job file's raw ``[axes]`` value, in x, y, z, extra1, ... order.

    ``fail(key, problem)`` builds the exception to raise; ``key`` is "axes", "axes.x" or
    "axes.x.cfg" (extra axes: "axes.extra[1].seed", counted from 1 like their slots).
    """
    if table is None:
        return []
    if not isinstance(table, dict):
        raise fail("axes", 'must be a table, like [axes] with x = { cfg = "4-12 (+2)" }')
    unknown = [slot for slot in table if slot not in SLOTS]
    if unknown:
        raise fail(f"axes.{unknown[0]}", f"unknown axis{did_you_mean(unknown[0], SLOTS)}; "
                                         f"allowed: {', '.join(SLOTS)}")

    entries = [(s, f"axes.{s}", table[s]) for s in SLOTS[:3] if s in table]
    extra = table.get("extra", [])
    if isinstance(extra, dict):
        extra = [extra]
    if not isinstance(extra, list):
        raise fail("axes.extra", "must be a list of tables, written [[axes.extra]]")
    entries += [(f"extra{i}", f"axes.extra[{i}]", t) for i, t in enumerate(extra, start=1)]

    axes: list[Axis] = []
    for slot, key, axis_table in entries:
        axes.append(_parse_axis(slot, key, axis_table, fail))
    _check_no_overlap(axes, fail)
    return axes


def _parse_axis(slot: str, key: str, axis_table: object, fail: Fail) -> Axis:
    if not isinstance(axis_table, dict):
        raise fail(key, 'must be a table with one parameter, like { cfg = "4-12 (+2)" }')
    if len(axis_table) != 1:
        got = ", ".join(axis_table) or "none"
        raise fail(key, f"an axis varies exactly one parameter, got {len(axis_table)} ({got}); "
                        f"allowed: {', '.join(AXIS_PARAMS)}")
    ((param, raw),) = axis_table.items()
    if param not in AXIS_PARAMS:
        raise fail(f"{key}.{param}", f"unknown axis parameter{did_you_mean(param, AXIS_PARAMS)}; "
                                     f"allowed: {', '.join(AXIS_PARAMS)}")
    if param == "lora_weight":
        return _lora_weight_axis(slot, f"{key}.{param}", raw, fail)
    values = parse_values(param, raw, lambda problem: fail(f"{key}.{param}", problem))
    return Axis(slot, param, values, tuple(axis_label(param, v) for v in values))


def _lora_weight_axis(slot: str, key: str, raw: object, fail: Fail) -> Axis:
    """``{ name = "ghibli", values = "0-1 (+0.25)" }``: values (name, weight)."""
    if not isinstance(raw, dict) or set(raw) != {"name", "values"}:
        raise fail(key, 'must be a table { name = "NAME", values = ... } with the LoRA\'s name '
                        f"and its weights, got {describe(raw)}")
    name = raw["name"]
    if not isinstance(name, str):
        raise fail(f"{key}.name", f"must be a LoRA name (a string), got {describe(name)}")
    try:
        check_name(name.strip(), "name")
    except LoraError as exc:
        raise fail(f"{key}.name", str(exc)) from None
    weights = parse_values("lora_weight", raw["values"],
                           lambda problem: fail(f"{key}.values", problem))
    values = tuple((name.strip(), w) for w in weights)
    return Axis(slot, "lora_weight", values, tuple(axis_label("lora_weight", v) for v in values))


def _check_no_overlap(axes: list[Axis], fail: Fail) -> None:
    # Two axes setting one field would overwrite each other cell by cell.
    claimed: dict[str, Axis] = {}
    for axis in axes:
        fields = ("width", "height") if axis.param == "size" else (axis.param,)
        if axis.param == "lora_weight":  # one weight axis per LoRA
            fields = (f"LoRA {axis.values[0][0]!r}",)
        for name in fields:
            other = claimed.get(name)
            if other is not None:
                raise fail(axis.key, f"{axis.param} is already varied by {other.key}; "
                                     "each parameter may be on one axis only")
            claimed[name] = axis


def parse_values(param: str, raw: object, fail_problem: FailProblem) -> tuple:
    """The typed values ``raw`` (a TOML list, a value, or an A1111 value string) stands for."""
    if isinstance(raw, list):
        items = _list_items(param, raw, fail_problem)
    elif isinstance(raw, str):
        items = _string_items(param, raw, fail_problem) if raw.strip() else []
    elif isinstance(raw, (int, float)) and not isinstance(raw, bool):
        items = [raw]
    else:
        raise fail_problem(f"must be a list or a string of values, got {describe(raw)}; "
                           f"{param} takes {AXIS_PARAMS[param]}")
    if not items:
        raise fail_problem(f"has no values (got {raw!r}); {param} takes {AXIS_PARAMS[param]}")
    if len(items) > MAX_AXIS_VALUES:
        raise fail_problem(f"has {len(items)} values; {AT_MOST}")
    values = tuple(_check_value(param, item, fail_problem) for item in items)
    if param == "prompt_sr" and not values[0].strip():
        # Later values may be empty (drop the term); the search term may not.
        raise fail_problem("the first value is the search term and must not be empty")
    seen: set = set()
    for value in values:
        if value in seen:
            raise fail_problem(f"repeats the value {axis_label(param, value)!r}; "
                               "each value must appear once")
        seen.add(value)
    return values


def _list_items(param: str, raw: list, fail_problem: FailProblem) -> list:
    kinds = {_kind(item) for item in raw}
    if len(kinds) > 1:
        shown = ", ".join(describe(item) for item in raw[:4])
        raise fail_problem(f"mixes types in one list ({shown}); use one type, "
                           f"{param} takes {AXIS_PARAMS[param]}")
    return list(raw)


def _kind(item: object) -> str:
    if isinstance(item, bool):
        return "boolean"
    if isinstance(item, (int, float)):
        return "number"
    return type(item).__name__


def _string_items(param: str, text: str, fail_problem: FailProblem) -> list:
    if _is_text(param):
        # csv, as A1111 does, so a quoted value may hold a comma: '"red, blue", green'.
        rows = list(csv.reader([text], skipinitialspace=True))
        parts = [p.strip() for p in rows[0]] if rows else []
        if not parts or any(not p for p in parts):
            raise fail_problem(f"has an empty item in {text!r}; write values separated by "
                               "commas, or a TOML list")
        return parts
    values: list = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            raise fail_problem(f"has an empty item in {text!r}; {_syntax(param)}")
        values.extend(expand_range(part, _param(param).kind == "float", _syntax(param),
                                   fail_problem))
        if len(values) > MAX_AXIS_VALUES:
            break  # parse_values reports the count
    return values


def _is_text(param: str) -> bool:
    """Whether an axis string is a list of texts (csv) rather than of numbers and ranges."""
    return param != "lora_weight" and (param in _COMPOSITE
                                       or PARAMS[param].kind not in ("int", "float"))


def _param(param: str) -> Param:
    return _LORA_WEIGHT if param == "lora_weight" else PARAMS[param]


def _check_value(param: str, value: object, fail_problem: FailProblem) -> object:
    if param == "size":
        return _check_size(value, fail_problem)
    if param == "prompt_sr":
        if not isinstance(value, str):
            raise fail_problem(f"prompt_sr value {value!r} is not a string; "
                               f"prompt_sr takes {AXIS_PARAMS[param]}")
        return value
    if param == "lora":
        return _check_lora_name(value, fail_problem)
    try:
        checked = _param(param).check(value)
    except BadValue as exc:
        raise fail_problem(_value_problem(exc)) from None
    return round(checked, FLOAT_DECIMALS) if isinstance(checked, float) else checked


def _value_problem(exc: BadValue) -> str:
    """What is wrong with one axis value, naming it and what the axis takes."""
    param, value = exc.param, exc.value
    takes = f"{param.name} takes {param.axis_description}"
    if exc.reason == "unknown":
        return exc.detail
    if exc.reason == "empty":
        return f"has an empty {param.name} value; {takes}"
    if param.kind == "float":
        return f"{param.name} value {value!r} is not allowed; {param.name} takes {param.allowed}"
    if exc.reason == "fraction":
        return f"{param.name} value {value!r} is a fractional number; {takes}"
    if exc.reason == "type":
        kind = "an integer" if param.kind == "int" else "a string"
        return f"{param.name} value {value!r} is not {kind}; {takes}"
    return f"{param.name} value {value} is out of range; {takes}"


def _check_lora_name(value: object, fail_problem: FailProblem) -> str:
    """A lora axis value as "name:weight" (the weight written as tags write it), or "none"."""
    if not isinstance(value, str):
        raise fail_problem(f"lora value {value!r} is not a string; lora takes "
                           f"{AXIS_PARAMS['lora']}")
    text = value.strip()
    if text.casefold() == NO_LORA:
        return NO_LORA
    name, sep, weight = text.partition(":")
    try:
        check_name(name.strip(), "lora")
        number = float(weight) if sep else 1.0
    except LoraError as exc:
        raise fail_problem(str(exc)) from None
    except ValueError:
        raise fail_problem(f"lora value {value!r}: weight {weight!r} is not a number") from None
    if not abs(number) <= MAX_WEIGHT:
        raise fail_problem(f"lora value {value!r}: the weight must be a number from "
                           f"-{MAX_WEIGHT:g} to {MAX_WEIGHT:g}")
    return f"{name.strip()}:{format_weight(round(number, FLOAT_DECIMALS))}"


def _check_size(value: object, fail_problem: FailProblem) -> tuple[int, int]:
    m = _SIZE.fullmatch(value.strip()) if isinstance(value, str) else None
    if m is None:
        raise fail_problem(f"size value {value!r} is not WIDTHxHEIGHT; "
                           'size takes values like "512x768"')
    width, height = int(m[1]), int(m[2])
    for param, n in ((PARAMS["width"], width), (PARAMS["height"], height)):
        try:
            param.check(n)
        except BadValue:
            raise fail_problem(f"size value {value!r} is out of range; width and height must be "
                               f"{param.allowed}") from None
    return width, height


def _syntax(param: str) -> str:
    if param == "cfg":
        return ('cfg takes numbers from 0 to 50: a list [4, 7.5] or a string like '
                '"4, 7.5, 5-8, 4-12 (+2), 4.5-7.5 (+0.5), 5-8 [4]"')
    if param == "eta":
        return ('eta takes numbers from 0 to 1: a list [0, 0.5] or a string like '
                '"0, 0.5, 0-1 (+0.25), 0-1 [5]"')
    return (f'{param} takes {AXIS_PARAMS[param]}: a list [10, 20] or a string like '
            '"10, 20, 10-50 (+10), 50-10 (-10), 10-50 [5]"')


def check_prompt_sr(axis: Axis, prompt: str, fail: Fail) -> None:
    """Raise unless a Prompt S/R axis's search term (its first value) occurs in ``prompt``."""
    if axis.param != "prompt_sr":
        return
    term = axis.values[0]
    if term not in prompt:
        shown = prompt if len(prompt) <= 60 else prompt[:57] + "..."
        raise fail(axis.key, f"search term {term!r} (the first value) does not occur in the "
                             f"prompt {shown!r}; Prompt S/R replaces it with each value")


def apply_axis_value(spec: RenderSpec, axis: Axis, value: Any, original_prompt: str) -> RenderSpec:
    """``spec`` with the axis's parameter set to ``value``.

    ``size`` sets width and height; ``prompt_sr`` replaces every occurrence of the search term
    in ``original_prompt`` (the first value replaces itself, as in A1111). Only the positive
    prompt is searched, unlike A1111, which also searches the negative prompt.
    """
    param = axis.param
    if param == "size":
        return spec.replace(width=value[0], height=value[1])
    if param in PROMPT_AXES:
        return spec.replace(prompt=rewrite_prompt(axis, value, original_prompt))
    if param == "model":
        # The base spec's hash belongs to the base model; the caller hashes this one.
        return spec.replace(model=value, model_hash=None)
    if param == "sampler":
        # A combined name ("DPM++ 2M Karras") sets the schedule too.
        sampler, schedule = split_sampler(value)
        return spec.replace(sampler=sampler, **({"schedule": schedule} if schedule else {}))
    return spec.replace(**{param: value})


def rewrite_prompt(axis: Axis, value: Any, prompt: str) -> str:
    """``prompt`` as one value of a prompt-rewriting axis (:data:`PROMPT_AXES`) makes it:
    Prompt S/R replaces its search term; a LoRA weight axis sets that LoRA's tag (rewritten
    where it stands, appended when the prompt has none); a lora axis adds its LoRA's tag
    ("none" adds nothing)."""
    if axis.param == "prompt_sr":
        return prompt.replace(axis.values[0], value)
    if axis.param == "lora_weight":
        return set_weight(prompt, value[0], value[1])
    if value == NO_LORA:
        return prompt
    name, _, weight = value.rpartition(":")
    return set_weight(prompt, name, float(weight))
