"""The job file (TOML): read, validate, and hold it as a typed :class:`JobFile`.

Every error is one line naming the file, the key and what is allowed. Pure: no torch, no DB.
"""

from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from sdfarm.errors import JobFileError
from sdfarm.params import (
    MAX_SEED,
    PARAMS,
    BadValue,
    Conflict,
    Param,
    check_combination,
    describe,
    split_combined,
)
from sdfarm.samplers import AUTOMATIC, split_sampler
from sdfarm.scheduler import hires
from sdfarm.scheduler.axes import Axis, parse_axes
from sdfarm.scheduler.seeds import duplicates_warning, written_seeds
from sdfarm.spec import RenderSpec
from sdfarm.suggest import did_you_mean

#: Largest forward pass a job file may ask for.
MAX_BATCH_SIZE = 64
#: Default images per forward pass. The same on every device so that planning stays pure and
#: a seed's batch composition does not depend on which worker picks it up.
DEFAULT_BATCH_SIZE = 4
#: Most images a job file may describe unless it raises ``max_images``: a typo in a range
#: ("1-10000") should be a message, not a night of rendering.
DEFAULT_MAX_IMAGES = 100_000
#: Ceiling of ``max_images`` itself: what was measured to work (``bench/plan.py --cells
#: 1000000``: planned, recorded in one transaction and submitted in under 200 MB). Ten million
#: could not be recorded at all (MemoryError at 8 GB, before sweeps streamed).
MAX_IMAGES_LIMIT = 1_000_000
#: Where ``__name__`` wildcards are looked up, relative to the job file.
DEFAULT_WILDCARDS = "wildcards"
#: Most prompts one template may expand to; beyond it, ask for N random draws instead.
MAX_PROMPTS = 100_000

#: ``"combinatorial"`` (every expansion of the prompt templates) or a number of random draws.
PromptMode = Literal["combinatorial"] | int


@dataclass(frozen=True)
class JobFile:
    path: str
    text: str
    name: str
    #: Every per-image parameter the file sets or leaves at its default; the seed is 0 here
    #: (the seeds, below, give each image its own).
    base: RenderSpec
    batch_size: int = DEFAULT_BATCH_SIZE
    #: The raw ``seeds`` value (list, range string, ``{random = N}``); resolved by ``seeds.py``.
    seeds: Any = field(default_factory=lambda: {"random": 1})
    #: Seed of every random draw in this sweep; defaults to a hash of the file's text, so
    #: planning the same file again gives the same seeds (and resumes instead of re-rendering).
    sweep_seed: int = 0
    #: Diffusers folder giving the config of a single-file checkpoint (offline use).
    model_config: str | None = None
    #: Explicit opt-in to load pickle checkpoints (.ckpt/.pt), which can run arbitrary code.
    allow_pickle: bool = False
    #: Grid axes in x, y, z, extra1, ... order; empty for a plain sweep.
    axes: tuple[Axis, ...] = ()
    #: ``"combinatorial"`` (every expansion of the prompt templates) or N random draws.
    prompt_mode: PromptMode = "combinatorial"
    #: The wildcard folder, relative paths already joined to the job file's folder.
    wildcard_dir: str = DEFAULT_WILDCARDS
    #: The plan is refused above this many images.
    max_images: int = DEFAULT_MAX_IMAGES
    #: The per-image parameters the file sets itself; the others take their defaults, some
    #: of them (``sdfarm.families.FAMILY_DEFAULTS``) from the model's family.
    explicit: frozenset[str] = frozenset()
    #: What the commands that read the file (plan, render, submit) print on stderr, once
    #: each: things that are not errors but not what the file says either.
    warnings: tuple[str, ...] = ()


class _Reader:
    """Validates one table of a job file, naming the file and key in every error."""

    def __init__(self, path: str, data: dict[str, Any]) -> None:
        self.path = path
        self.data = data

    def fail(self, key: str | None, problem: str) -> JobFileError:
        return JobFileError(self.path, key, problem)

    def param(self, param: Param) -> object:
        """A per-image parameter, checked by the parameter table."""
        if param.name not in self.data:
            if param.required:
                raise self.fail(param.name, "is required (a string)")
            return param.default
        try:
            return param.check(self.data[param.name])
        except BadValue as exc:
            raise self.fail(param.name, value_problem(exc)) from None

    def string(self, key: str, *, default: str | None = None) -> str | None:
        if key not in self.data:
            return default
        value = self.data[key]
        if not isinstance(value, str):
            raise self.fail(key, f"must be a string, got {describe(value)}")
        if not value.strip():
            raise self.fail(key, "must not be empty")
        return value

    def integer(self, key: str, default: int, low: int, high: int) -> int:
        if key not in self.data:
            return default
        return check_int(self, key, self.data[key], low, high)

    def boolean(self, key: str, default: bool) -> bool:
        if key not in self.data:
            return default
        value = self.data[key]
        if not isinstance(value, bool):
            raise self.fail(key, f"must be true or false, got {describe(value)}")
        return value


def value_problem(exc: BadValue) -> str:
    """What is wrong with a value, as a job file (or ``--set``) error says it after the key."""
    param, value = exc.param, exc.value
    if exc.reason == "unknown":
        return exc.detail
    if exc.reason == "empty":
        return "must not be empty"
    if exc.reason == "multiple":
        return f"must be a multiple of {param.multiple_of}, got {value}"
    if exc.reason == "range":
        return f"must be {param.expected}, got {param.format(value)}"
    return f"must be {param.expected}, got {describe(value)}"


def check_int(reader: _Reader, key: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        got = value if isinstance(value, int) and not isinstance(value, bool) else describe(value)
        raise reader.fail(key, f"must be an integer from {low} to {high}, got {got}")
    return value


#: The keys that set the sweep rather than each image, and what each one is.
SWEEP_KEYS: dict[str, str] = {
    "name": "sweep name",
    "model_config": "diffusers folder with the config of a single-file model",
    "allow_pickle": "true to load .ckpt/.pt checkpoints",
    "batch_size": "images per forward pass",
    "seeds": "seed list, range or {random = N}",
    "sweep_seed": "seed of the sweep's random draws",
    "prompts": '"combinatorial" or { random = N }',
    "wildcards": "folder of __name__ wildcard files",
    "max_images": "most images the file may describe",
    "axes": "grid axes x, y, z and [[axes.extra]]",
}

#: Job file keys and what each one is; the error for an unknown key lists them. The seed is
#: set by ``seeds`` (or a seed axis), not by a key of its own.
KNOWN_KEYS: dict[str, str] = {
    "name": SWEEP_KEYS["name"],
    **{p.name: p.description for p in PARAMS.values() if p.name != "seed" and not p.derived},
    "hires": hires.DESCRIPTION,  # issue 11: hires fix
    **{k: v for k, v in SWEEP_KEYS.items() if k != "name"},
}

_PROMPT_MODES = '"combinatorial" (every expansion) or { random = N } (N draws)'


def parse_job_file(text: str, path: str = "<job file>") -> JobFile:
    """Validate ``text`` as a job file; raises :class:`JobFileError` on the first problem."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise JobFileError(path, None, f"invalid TOML: {exc}") from None
    except RecursionError:  # tomllib recurses once per level of nested arrays or tables
        raise JobFileError(path, None, "invalid TOML: arrays or tables nested too deeply "
                           "for a job file") from None
    r = _Reader(path, data)
    unknown = sorted(set(data) - set(KNOWN_KEYS))
    if unknown:
        raise r.fail(unknown[0], f"unknown key{did_you_mean(unknown[0], KNOWN_KEYS)}; "
                                 f"allowed keys: {', '.join(KNOWN_KEYS)}")

    values = {p.name: r.param(p) for p in PARAMS.values() if p.name != "seed" and not p.derived}
    seeds = data.get("seeds", {"random": 1})
    written = written_seeds(seeds, 0, fail=lambda problem: r.fail("seeds", problem))
    repeated = duplicates_warning(written)
    del written  # validated; expansion resolves the seeds again, with the sweep seed
    default_sweep_seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big")
    axes = tuple(parse_axes(data.get("axes"), r.fail))
    seed_axis = next((a for a in axes if a.param == "seed"), None)
    if seed_axis is not None and "seeds" in data:
        raise r.fail("seeds", f"the seed is already varied by {seed_axis.key}; remove seeds "
                              "(or the seed axis): each cell's seed comes from the axis")
    wildcards = r.string("wildcards", default=DEFAULT_WILDCARDS)
    values["sampler"], values["schedule"] = _sampling(r, values, axes)
    values.update(hires.hires_values(data, axes, values, r.fail))  # issue 11: hires, img2img

    return JobFile(
        path=path,
        text=text,
        name=r.string("name", default=Path(path).stem) or "sweep",
        base=RenderSpec(seed=0, **values),  # type: ignore[arg-type]
        model_config=r.string("model_config"),
        allow_pickle=r.boolean("allow_pickle", False),
        batch_size=r.integer("batch_size", DEFAULT_BATCH_SIZE, 1, MAX_BATCH_SIZE),
        seeds=seeds,
        sweep_seed=r.integer("sweep_seed", default_sweep_seed, 0, MAX_SEED),
        axes=axes,
        prompt_mode=_prompt_mode(r, data.get("prompts", "combinatorial")),
        wildcard_dir=str(Path(path).parent / Path(wildcards).expanduser()),  # type: ignore[arg-type]
        max_images=_max_images(r),
        explicit=frozenset(name for name in PARAMS if name in data),
        warnings=(f"{path}: seeds: {repeated}",) if repeated else (),
    )


def _sampling(r: _Reader, values: dict[str, Any], axes: tuple[Axis, ...]) -> tuple[str, str]:
    """The base spec's (sampler, schedule), a combined sampler name ("DPM++ 2M Karras") split;
    refuses a combined name that contradicts a schedule given apart, and every (sampler,
    schedule, eta) the plan would hold that cannot be rendered together."""
    axis_of = {a.param: a for a in axes}
    sampler_axis, schedule_axis = axis_of.get("sampler"), axis_of.get("schedule")
    explicit = values["schedule"] if "schedule" in r.data else None
    if sampler_axis is not None:
        # The axis sets the sampler of every cell: the sampler key is not used.
        base, schedule = split_sampler(values["sampler"])[0], explicit or AUTOMATIC
        choices = []
        for value in sampler_axis.values:
            name, named = split_sampler(value)
            if named is not None and schedule_axis is not None:
                raise r.fail(sampler_axis.key, f"{value!r} names a schedule, and "
                                               f"{schedule_axis.key} varies it; use sampler "
                                               "names without a schedule")
            if named is not None and explicit is not None and named != explicit:
                raise r.fail("schedule", f"{explicit!r} contradicts {sampler_axis.key} value "
                                         f"{value!r} (schedule {named!r})")
            choices.append((name, named or schedule))
    else:
        try:
            base, schedule = split_combined(values["sampler"], explicit)
        except Conflict as exc:
            raise r.fail(exc.key, exc.problem) from None
        if schedule_axis is not None and split_sampler(values["sampler"])[1] is not None:
            raise r.fail(schedule_axis.key, f"sampler {values['sampler']!r} names a schedule; "
                                            f"write sampler = {base!r} to vary the schedule")
        choices = [(base, schedule)]
    schedules = schedule_axis.values if schedule_axis is not None else None
    etas = axis_of["eta"].values if "eta" in axis_of else (values["eta"],)
    for sampler, schedule_of_sampler in dict.fromkeys(choices):
        for schedule_ in schedules or (schedule_of_sampler,):
            for eta in etas:
                problem = check_combination(sampler, schedule_, eta)
                if problem is None:
                    continue
                param, _, text = problem.partition(": ")
                key = (axis_of[param].key if param in axis_of else param if param in r.data
                       else sampler_axis.key if sampler_axis is not None else "sampler")
                raise r.fail(key, text)
    return base, schedule


def _max_images(r: _Reader) -> int:
    value = r.data.get("max_images", DEFAULT_MAX_IMAGES)
    if isinstance(value, int) and not isinstance(value, bool) and value > MAX_IMAGES_LIMIT:
        raise r.fail("max_images", f"must be an integer from 1 to {MAX_IMAGES_LIMIT:,} (the largest "
                                   f"sweep measured to record and submit), got {value:,}; split "
                                   "the sweep into several job files")
    return r.integer("max_images", DEFAULT_MAX_IMAGES, 1, MAX_IMAGES_LIMIT)


def _prompt_mode(r: _Reader, value: Any) -> PromptMode:
    if value == "combinatorial":
        return "combinatorial"
    if isinstance(value, dict) and set(value) == {"random"}:
        return check_int(r, "prompts.random", value["random"], 1, MAX_PROMPTS)
    if isinstance(value, dict):
        raise r.fail("prompts", f"a prompts table takes only 'random' (as in {{ random = 8 }}), "
                                f"got {sorted(value)}")
    raise r.fail("prompts", f"must be {_PROMPT_MODES}, got {describe(value)}")


def load_job_file(path: str | Path) -> JobFile:
    """Read and validate a job file from disk."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise JobFileError(str(path), None, "no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise JobFileError(str(path), None, f"cannot be read: {exc}") from None
    return parse_job_file(text, str(path))
