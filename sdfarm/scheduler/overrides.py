"""``rerun --set key=value``: a job's spec with some parameters changed, checked by the same
rules as a job file (so ``--set steps=0`` fails the way ``steps = 0`` does). Pure."""

from __future__ import annotations

import json
import tomllib
from collections.abc import Sequence

from sdfarm.errors import JobFileError
from sdfarm.scheduler.jobfile import parse_job_file
from sdfarm.spec import RenderSpec

#: What ``--set`` may change, and whether its value is text (taken as written) or a number.
SETTABLE: dict[str, type] = {
    "model": str, "prompt": str, "negative_prompt": str, "sampler": str, "seed": int,
    "steps": int, "cfg": float, "width": int, "height": int, "clip_skip": int,
}
#: What ``rerun --set`` errors name as the place of the problem.
WHERE = "--set"


def parse_assignments(items: Sequence[str]) -> dict[str, object]:
    """``["steps=50", "prompt=a cat, at dusk"]`` -> ``{"steps": 50, "prompt": "a cat, at dusk"}``."""
    out: dict[str, object] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or key not in SETTABLE:
            problem = "is not key=value" if not sep else "cannot be set"
            raise JobFileError(WHERE, key or item, f"{problem}; settable: {', '.join(SETTABLE)}")
        if SETTABLE[key] is str:
            out[key] = raw
            continue
        try:
            value = tomllib.loads(f"v = {raw.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw  # reported below as "must be a number, got a string"
        out[key] = value
    return out


def apply_overrides(spec: RenderSpec, changes: dict[str, object]) -> RenderSpec:
    """``spec`` with ``changes``, validated as a job file would be (seed included). The model
    hash is dropped when the model changes: the caller hashes the new weights."""
    values = {name: getattr(spec, name) for name in SETTABLE}
    values.update(changes)
    seed = values.pop("seed")
    lines = [f"{key} = {_toml(value)}" for key, value in values.items()]
    lines.append(f"seeds = [{_toml(seed)}]")
    try:
        job = parse_job_file("\n".join(lines) + "\n", WHERE)
    except JobFileError as exc:
        if exc.key != "seeds":
            raise
        raise JobFileError(WHERE, "seed", exc.problem) from None
    new_seed = job.seeds[0] if isinstance(job.seeds, list) else seed
    return spec.replace(
        model=job.model, prompt=job.prompt, negative_prompt=job.negative_prompt,
        sampler=job.sampler, seed=new_seed, steps=job.steps, cfg=job.cfg, width=job.width,
        height=job.height, clip_skip=job.clip_skip,
        model_hash=spec.model_hash if job.model == spec.model else None,
    )


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        # A JSON string is a TOML basic string, but for DEL, which TOML wants escaped.
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    return repr(value)
