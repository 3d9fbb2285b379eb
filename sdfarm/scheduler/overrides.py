"""``rerun --set key=value``: a job's spec with some parameters changed, each checked by the
parameter table's rule for it (so ``--set steps=0`` fails the way ``steps = 0`` does). Pure."""

from __future__ import annotations

from collections.abc import Sequence

from sdfarm.errors import JobFileError
from sdfarm.params import PARAMS, BadValue, Conflict, check_combination, split_combined
from sdfarm.samplers import split_sampler
from sdfarm.scheduler.jobfile import value_problem
from sdfarm.spec import RenderSpec

#: What ``rerun --set`` errors name as the place of the problem.
WHERE = "--set"
#: The parameters ``--set`` takes: those a job file takes (hashes follow their files).
SETTABLE = tuple(name for name, p in PARAMS.items() if not p.derived)


def parse_assignments(items: Sequence[str]) -> dict[str, object]:
    """``["steps=50", "prompt=a cat, at dusk"]`` -> ``{"steps": 50, "prompt": "a cat, at dusk"}``:
    numbers read as numbers, text taken as written. Values are checked by ``apply_overrides``."""
    out: dict[str, object] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or key not in SETTABLE:
            problem = "is not key=value" if not sep else "cannot be set"
            raise JobFileError(WHERE, key or item, f"{problem}; settable: {', '.join(SETTABLE)}")
        out[key] = PARAMS[key].parse_text(raw)
    return out


def apply_overrides(spec: RenderSpec, changes: dict[str, object]) -> RenderSpec:
    """``spec`` with ``changes``, each checked as a job file value would be. The model hash is
    dropped when the model changes, the VAE hash when the VAE does: the caller hashes the new
    files (and finds the embeddings a changed prompt uses)."""
    checked: dict[str, object] = {}
    for key, value in changes.items():
        try:
            checked[key] = PARAMS[key].check(value)
        except BadValue as exc:
            raise JobFileError(WHERE, key, value_problem(exc)) from None
    if "sampler" in checked:
        # A combined name ("DPM++ 2M Karras") sets the schedule; a base name keeps the job's
        # schedule unless one is given.
        given = checked.get("schedule")
        try:
            checked["sampler"], schedule = split_combined(checked["sampler"], given)
        except Conflict as exc:
            raise JobFileError(WHERE, exc.key, exc.problem) from None
        named = split_sampler(str(changes["sampler"]))[1] is not None
        checked["schedule"] = schedule if named or given is not None else spec.schedule
    if checked.get("model", spec.model) != spec.model:
        checked["model_hash"] = None
    if "vae" in checked:
        checked["vae_hash"] = ""  # the caller hashes the file given (issue 11, VAE)
    new = spec.replace(**checked).normalized()
    problem = check_combination(new.sampler, new.schedule, new.eta)
    if problem is not None:
        param, _, text = problem.partition(": ")
        raise JobFileError(WHERE, param if param in changes else "sampler", text)
    return new

