"""The job file (TOML): read, validate, and hold it as a typed :class:`JobFile`.

Every error is one line naming the file, the key and what is allowed. Pure: no torch, no DB.
"""

from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sdfarm.errors import JobFileError, SamplerError
from sdfarm.samplers import canonical_sampler
from sdfarm.scheduler.axes import Axis, parse_axes
from sdfarm.scheduler.prompts import MAX_PROMPTS, PromptMode

#: Seeds are stored as signed 64-bit integers; A1111 draws from 32 bits, ComfyUI from 64.
MAX_SEED = 2**63 - 1
#: Largest forward pass a job file may ask for.
MAX_BATCH_SIZE = 64
#: Default images per forward pass. The same on every device so that planning stays pure and
#: a seed's batch composition does not depend on which worker picks it up.
DEFAULT_BATCH_SIZE = 4
#: Most images a job file may describe unless it raises ``max_images``: a typo in a range
#: ("1-10000") should be a message, not a night of rendering.
DEFAULT_MAX_IMAGES = 100_000
#: Ceiling of ``max_images`` itself: a sweep is recorded in one transaction.
MAX_IMAGES_LIMIT = 10_000_000
#: Where ``__name__`` wildcards are looked up, relative to the job file.
DEFAULT_WILDCARDS = "wildcards"


@dataclass(frozen=True)
class JobFile:
    path: str
    text: str
    name: str
    model: str
    prompt: str
    negative_prompt: str = ""
    sampler: str = "Euler a"
    steps: int = 20
    cfg: float = 7.0
    width: int = 512
    height: int = 512
    clip_skip: int = 1
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


class _Reader:
    """Validates one table of a job file, naming the file and key in every error."""

    def __init__(self, path: str, data: dict[str, Any]) -> None:
        self.path = path
        self.data = data

    def fail(self, key: str | None, problem: str) -> JobFileError:
        return JobFileError(self.path, key, problem)

    def string(self, key: str, *, required: bool = False, default: str | None = None,
               allow_empty: bool = True) -> str | None:
        if key not in self.data:
            if required:
                raise self.fail(key, "is required (a string)")
            return default
        value = self.data[key]
        if not isinstance(value, str):
            raise self.fail(key, f"must be a string, got {_describe(value)}")
        if not allow_empty and not value.strip():
            raise self.fail(key, "must not be empty")
        return value

    def integer(self, key: str, default: int, low: int, high: int, *, multiple_of: int = 1) -> int:
        if key not in self.data:
            return default
        return check_int(self, key, self.data[key], low, high, multiple_of=multiple_of)

    def number(self, key: str, default: float, low: float, high: float) -> float:
        if key not in self.data:
            return default
        return check_number(self, key, self.data[key], low, high)

    def boolean(self, key: str, default: bool) -> bool:
        if key not in self.data:
            return default
        value = self.data[key]
        if not isinstance(value, bool):
            raise self.fail(key, f"must be true or false, got {_describe(value)}")
        return value


def check_int(reader: _Reader, key: str, value: Any, low: int, high: int, *, multiple_of: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise reader.fail(key, f"must be an integer from {low} to {high}, got {_describe(value)}")
    if not low <= value <= high:
        raise reader.fail(key, f"must be an integer from {low} to {high}, got {value}")
    if value % multiple_of:
        raise reader.fail(key, f"must be a multiple of {multiple_of}, got {value}")
    return value


def check_number(reader: _Reader, key: str, value: Any, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise reader.fail(key, f"must be a number from {low:g} to {high:g}, got {_describe(value)}")
    if not low <= value <= high:
        raise reader.fail(key, f"must be a number from {low:g} to {high:g}, got {value:g}")
    return float(value)


def _describe(value: Any) -> str:
    kind = {str: "a string", bool: "a boolean", int: "an integer", float: "a number",
            list: "a list", dict: "a table"}.get(type(value), type(value).__name__)
    shown = repr(value)
    return f"{kind} {shown if len(shown) <= 40 else shown[:37] + '...'}"


#: Job file keys and what each one is; the error for an unknown key lists them.
KNOWN_KEYS: dict[str, str] = {
    "name": "sweep name",
    "model": "builtin:tiny, a Hugging Face repo id, a diffusers folder or a .safetensors file",
    "model_config": "diffusers folder with the config of a single-file model",
    "allow_pickle": "true to load .ckpt/.pt checkpoints",
    "prompt": "the prompt",
    "negative_prompt": "the negative prompt",
    "sampler": "A1111 sampler name",
    "steps": "denoising steps",
    "cfg": "CFG scale",
    "width": "image width",
    "height": "image height",
    "clip_skip": "CLIP skip (1 = none)",
    "batch_size": "images per forward pass",
    "seeds": "seed list, range or {random = N}",
    "sweep_seed": "seed of the sweep's random draws",
    "prompts": '"combinatorial" or { random = N }',
    "wildcards": "folder of __name__ wildcard files",
    "max_images": "most images the file may describe",
    "axes": "grid axes x, y, z and [[axes.extra]]",
}

_PROMPT_MODES = '"combinatorial" (every expansion) or { random = N } (N draws)'

def parse_job_file(text: str, path: str = "<job file>") -> JobFile:
    """Validate ``text`` as a job file; raises :class:`JobFileError` on the first problem."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise JobFileError(path, None, f"invalid TOML: {exc}") from None
    r = _Reader(path, data)
    unknown = sorted(set(data) - set(KNOWN_KEYS))
    if unknown:
        raise r.fail(unknown[0], f"unknown key; allowed keys: {', '.join(KNOWN_KEYS)}")

    sampler = r.string("sampler", default="Euler a", allow_empty=False)
    try:
        sampler = canonical_sampler(sampler)
    except SamplerError as exc:
        raise r.fail("sampler", str(exc)) from None

    seeds = data.get("seeds", {"random": 1})
    from sdfarm.scheduler.seeds import validate_seeds  # seeds.py imports this module

    validate_seeds(r, "seeds", seeds)
    default_sweep_seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big")
    axes = tuple(parse_axes(data.get("axes"), r.fail))
    seed_axis = next((a for a in axes if a.param == "seed"), None)
    if seed_axis is not None and "seeds" in data:
        raise r.fail("seeds", f"the seed is already varied by {seed_axis.key}; remove seeds "
                              "(or the seed axis): each cell's seed comes from the axis")
    wildcards = r.string("wildcards", default=DEFAULT_WILDCARDS, allow_empty=False)

    return JobFile(
        path=path,
        text=text,
        name=r.string("name", default=Path(path).stem, allow_empty=False) or "sweep",
        model=r.string("model", required=True, allow_empty=False),  # type: ignore[arg-type]
        model_config=r.string("model_config", allow_empty=False),
        allow_pickle=r.boolean("allow_pickle", False),
        prompt=r.string("prompt", required=True, allow_empty=False),  # type: ignore[arg-type]
        negative_prompt=r.string("negative_prompt", default="") or "",
        sampler=sampler,
        steps=r.integer("steps", 20, 1, 1000),
        cfg=r.number("cfg", 7.0, 0.0, 50.0),
        width=r.integer("width", 512, 8, 8192, multiple_of=8),
        height=r.integer("height", 512, 8, 8192, multiple_of=8),
        clip_skip=r.integer("clip_skip", 1, 1, 12),
        batch_size=r.integer("batch_size", DEFAULT_BATCH_SIZE, 1, MAX_BATCH_SIZE),
        seeds=seeds,
        sweep_seed=r.integer("sweep_seed", default_sweep_seed, 0, MAX_SEED),
        axes=axes,
        prompt_mode=_prompt_mode(r, data.get("prompts", "combinatorial")),
        wildcard_dir=str(Path(path).parent / Path(wildcards).expanduser()),  # type: ignore[arg-type]
        max_images=r.integer("max_images", DEFAULT_MAX_IMAGES, 1, MAX_IMAGES_LIMIT),
    )


def _prompt_mode(r: _Reader, value: Any) -> PromptMode:
    if value == "combinatorial":
        return "combinatorial"
    if isinstance(value, dict) and set(value) == {"random"}:
        return check_int(r, "prompts.random", value["random"], 1, MAX_PROMPTS)
    if isinstance(value, dict):
        raise r.fail("prompts", f"a prompts table takes only 'random' (as in {{ random = 8 }}), "
                                f"got {sorted(value)}")
    raise r.fail("prompts", f"must be {_PROMPT_MODES}, got {_describe(value)}")


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
