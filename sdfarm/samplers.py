"""AUTOMATIC1111 samplers and schedule types, and the diffusers scheduler each pair means.

Two tables, as A1111 >= 1.9 writes them (``Sampler: DPM++ 2M, Schedule type: Karras``):
:data:`SAMPLERS` (the base samplers: a diffusers scheduler class and its options) and
:data:`SCHEDULES` (the schedule types: options added to the sampler's). Which schedules a
sampler runs is written down as data (:attr:`Sampler.schedules`, the scheduler class takes the
schedule's option); ``tests/unit/test_samplers.py`` checks it against diffusers' signatures.
The older combined names ("DPM++ 2M Karras": any sampler name, a space, a schedule name) mean
sampler + schedule.

Pure data: validation at planning time needs the names without importing diffusers; the
worker turns a pair into a scheduler with ``from_config``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from sdfarm.errors import SamplerError
from sdfarm.suggest import did_you_mean

#: How a sampler takes ``eta`` (A1111's ``Eta`` / ``Eta DDIM``): ``"ddim"`` through the
#: pipeline's ``eta`` argument (noise added at each step, 0 = deterministic, A1111's default);
#: ``"ancestral"``: the share of fresh noise in each ancestral step (k-diffusion's
#: ``get_ancestral_step``; 1 = A1111's default, 0 = the plain Euler step), applied by
#: ``sdfarm.worker.schedulers``; ``"fixed"``: it draws noise at each step with an amount
#: diffusers does not let us choose (eta 1), so eta is refused; ``"unused"``: a deterministic
#: sampler, where eta is accepted and changes nothing.
EtaUse = Literal["ddim", "ancestral", "fixed", "unused"]

#: The default schedule: the scheduler class's own spacing of the model's config.
AUTOMATIC = "Automatic"


@dataclass(frozen=True)
class Schedule:
    #: As A1111 writes it in ``Schedule type:``.
    name: str
    #: Overrides passed to ``from_config`` on top of the sampler's.
    options: dict[str, object] = field(default_factory=dict)


#: Every schedule type sdfarm renders. A1111's "Uniform", "Polyexponential", "Align Your
#: Steps", "KL Optimal", "Simple", "Normal" and "DDIM" have no faithful diffusers option (see
#: README, Samplers and schedules).
SCHEDULES: dict[str, Schedule] = {
    AUTOMATIC: Schedule(AUTOMATIC),
    "Karras": Schedule("Karras", {"use_karras_sigmas": True}),
    "Exponential": Schedule("Exponential", {"use_exponential_sigmas": True}),
    # A1111's sgm_uniform takes timesteps evenly from the last one, as "trailing" spacing does.
    "SGM Uniform": Schedule("SGM Uniform", {"timestep_spacing": "trailing"}),
    # Needs scipy (beta distribution quantiles).
    "Beta": Schedule("Beta", {"use_beta_sigmas": True}),
}

_SIGMAS = (AUTOMATIC, "Karras", "Exponential", "SGM Uniform", "Beta")
_SPACING = (AUTOMATIC, "SGM Uniform")


@dataclass(frozen=True)
class Sampler:
    #: As A1111 writes it in ``Sampler:`` (without the schedule type).
    name: str
    #: Class name in ``diffusers``.
    scheduler_class: str
    #: Overrides passed to ``from_config``.
    options: dict[str, object] = field(default_factory=dict)
    #: The schedules it runs: those whose options its scheduler class takes.
    schedules: tuple[str, ...] = _SIGMAS
    #: Whether it draws fresh noise at each step (then its pixels depend on the generator's
    #: state through the run, not only on the starting noise).
    stochastic: bool = False
    #: How ``eta`` applies to it.
    eta: EtaUse = "unused"


_SDE = {"algorithm_type": "sde-dpmsolver++"}

#: Every base sampler, by its A1111 name.
SAMPLERS: dict[str, Sampler] = {s.name: s for s in (
    Sampler("Euler", "EulerDiscreteScheduler"),
    Sampler("Euler a", "EulerAncestralDiscreteScheduler", schedules=_SPACING, stochastic=True,
            eta="ancestral"),
    Sampler("Heun", "HeunDiscreteScheduler"),
    Sampler("LMS", "LMSDiscreteScheduler"),
    Sampler("DPM2", "KDPM2DiscreteScheduler"),
    Sampler("DPM2 a", "KDPM2AncestralDiscreteScheduler", stochastic=True, eta="fixed"),
    Sampler("DPM++ 2M", "DPMSolverMultistepScheduler"),
    Sampler("DPM++ 2M SDE", "DPMSolverMultistepScheduler", _SDE, stochastic=True, eta="fixed"),
    Sampler("DPM++ 2M SDE Heun", "DPMSolverMultistepScheduler", {**_SDE, "solver_type": "heun"},
            stochastic=True, eta="fixed"),
    Sampler("DPM++ 3M SDE", "DPMSolverMultistepScheduler", {**_SDE, "solver_order": 3},
            stochastic=True, eta="fixed"),
    Sampler("DPM++ SDE", "DPMSolverSDEScheduler", stochastic=True, eta="fixed"),
    Sampler("DDIM", "DDIMScheduler", schedules=_SPACING, eta="ddim"),
    Sampler("DDPM", "DDPMScheduler", schedules=_SPACING, stochastic=True, eta="fixed"),
    Sampler("PLMS", "PNDMScheduler", {"skip_prk_steps": True}, schedules=_SPACING),
    Sampler("UniPC", "UniPCMultistepScheduler"),
    Sampler("DEIS", "DEISMultistepScheduler"),
    Sampler("LCM", "LCMScheduler", schedules=_SPACING, stochastic=True, eta="fixed"),
)}

#: The combined names sdfarm accepted before schedules were their own parameter: a key
#: computed for one of them must stay the same (see ``RenderSpec.key``).
LEGACY_COMBINED: dict[str, tuple[str, str]] = {
    f"{name} Karras": (name, "Karras")
    for name in ("LMS", "DPM2", "DPM2 a", "DPM++ 2M", "DPM++ 2M SDE", "DPM++ SDE")
}

_BY_FOLDED = {name.casefold(): name for name in SAMPLERS}
_SCHEDULE_BY_FOLDED = {name.casefold(): name for name in SCHEDULES}
#: Every combined name, folded: "dpm++ 2m karras" -> ("DPM++ 2M", "Karras").
_COMBINED = {f"{s} {c}".casefold(): (s, c) for s in SAMPLERS for c in SCHEDULES
             if c != AUTOMATIC}


def _fold(name: str) -> str:
    return " ".join(name.split()).casefold()


def split_sampler(name: str) -> tuple[str, str | None]:
    """``(sampler, schedule)`` for a combined name ("DPM++ 2M Karras"), ``(sampler, None)``
    for a base name; case-insensitive. :class:`SamplerError` for an unknown name."""
    folded = _fold(name)
    if folded in _BY_FOLDED:
        return _BY_FOLDED[folded], None
    if folded in _COMBINED:
        return _COMBINED[folded]
    raise SamplerError(f"unknown sampler {name!r}{_closest(name)}; known samplers: "
                       f"{', '.join(SAMPLERS)} "
                       f"(or one of them and a schedule, as in 'DPM++ 2M Karras')")


def _closest(name: str) -> str:
    """The suggestion for a misspelled sampler, combined names ("DPM++ 2M Karass") included."""
    combined = [f"{sampler} {schedule}" for sampler, schedule in _COMBINED.values()]
    return did_you_mean(" ".join(name.split()), [*SAMPLERS, *combined])


def canonical_sampler(name: str) -> str:
    """The accepted spelling of ``name``, a base or a combined name, or :class:`SamplerError`."""
    sampler, schedule = split_sampler(name)
    return sampler if schedule is None else f"{sampler} {schedule}"


def canonical_schedule(name: str) -> str:
    """The accepted spelling of a schedule type (case-insensitive), or :class:`SamplerError`."""
    found = _SCHEDULE_BY_FOLDED.get(_fold(name))
    if found is None:
        raise SamplerError(f"unknown schedule {name!r}{did_you_mean(name, SCHEDULES)}; known "
                           f"schedules: {', '.join(SCHEDULES)}")
    return found


def supports(sampler: str, schedule: str) -> bool:
    entry = SAMPLERS.get(sampler)
    return entry is not None and schedule in entry.schedules


def unsupported_pair(sampler: str, schedule: str) -> str:
    """Why a (sampler, schedule) pair cannot be rendered, in one line."""
    return (f"sampler {sampler!r} cannot run schedule {schedule!r} (diffusers has no such "
            f"option for it); {sampler} runs: {', '.join(SAMPLERS[sampler].schedules)}")


def scheduler_options(sampler: str, schedule: str) -> tuple[str, dict[str, object]]:
    """The diffusers class name and ``from_config`` overrides of a supported pair."""
    if not supports(sampler, schedule):
        raise SamplerError(unsupported_pair(sampler, schedule) if sampler in SAMPLERS
                           else f"unknown sampler {sampler!r}")
    entry = SAMPLERS[sampler]
    return entry.scheduler_class, {**entry.options, **SCHEDULES[schedule].options}


def legacy_name(sampler: str, schedule: str) -> str | None:
    """The combined name this pair had before schedules were their own parameter, if any."""
    name = f"{sampler} {schedule}"
    return name if name in LEGACY_COMBINED else None
