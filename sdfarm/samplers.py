"""AUTOMATIC1111 sampler names and the diffusers scheduler each one means.

Pure data: validation at planning time needs the names without importing diffusers; the
worker turns an entry into a scheduler with ``from_config``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sdfarm.errors import SamplerError


@dataclass(frozen=True)
class Sampler:
    #: The sampler as A1111 writes it in ``Sampler:`` (without the schedule type).
    a1111_name: str
    #: A1111's ``Schedule type:`` value.
    schedule_type: str
    #: Class name in ``diffusers``.
    scheduler_class: str
    #: Overrides passed to ``from_config``.
    options: dict[str, object] = field(default_factory=dict)


_KARRAS = {"use_karras_sigmas": True}

#: Every accepted name, A1111's newer split names ("DPM++ 2M" + schedule "Karras") and the
#: older combined ones ("DPM++ 2M Karras") alike.
SAMPLERS: dict[str, Sampler] = {
    "Euler": Sampler("Euler", "Automatic", "EulerDiscreteScheduler"),
    "Euler a": Sampler("Euler a", "Automatic", "EulerAncestralDiscreteScheduler"),
    "Heun": Sampler("Heun", "Automatic", "HeunDiscreteScheduler"),
    "LMS": Sampler("LMS", "Automatic", "LMSDiscreteScheduler"),
    "LMS Karras": Sampler("LMS", "Karras", "LMSDiscreteScheduler", _KARRAS),
    "DPM2": Sampler("DPM2", "Automatic", "KDPM2DiscreteScheduler"),
    "DPM2 Karras": Sampler("DPM2", "Karras", "KDPM2DiscreteScheduler", _KARRAS),
    "DPM2 a": Sampler("DPM2 a", "Automatic", "KDPM2AncestralDiscreteScheduler"),
    "DPM2 a Karras": Sampler("DPM2 a", "Karras", "KDPM2AncestralDiscreteScheduler", _KARRAS),
    "DPM++ 2M": Sampler("DPM++ 2M", "Automatic", "DPMSolverMultistepScheduler"),
    "DPM++ 2M Karras": Sampler("DPM++ 2M", "Karras", "DPMSolverMultistepScheduler", _KARRAS),
    "DPM++ 2M SDE": Sampler(
        "DPM++ 2M SDE", "Automatic", "DPMSolverMultistepScheduler",
        {"algorithm_type": "sde-dpmsolver++"},
    ),
    "DPM++ 2M SDE Karras": Sampler(
        "DPM++ 2M SDE", "Karras", "DPMSolverMultistepScheduler",
        {"algorithm_type": "sde-dpmsolver++", **_KARRAS},
    ),
    "DPM++ SDE": Sampler("DPM++ SDE", "Automatic", "DPMSolverSDEScheduler"),
    "DPM++ SDE Karras": Sampler("DPM++ SDE", "Karras", "DPMSolverSDEScheduler", _KARRAS),
    "DDIM": Sampler("DDIM", "Automatic", "DDIMScheduler"),
    "PLMS": Sampler("PLMS", "Automatic", "PNDMScheduler", {"skip_prk_steps": True}),
    "UniPC": Sampler("UniPC", "Automatic", "UniPCMultistepScheduler"),
    "DEIS": Sampler("DEIS", "Automatic", "DEISMultistepScheduler"),
}

_BY_FOLDED = {name.casefold(): name for name in SAMPLERS}


def canonical_sampler(name: str) -> str:
    """The accepted spelling of ``name`` (case-insensitive), or :class:`SamplerError`."""
    found = _BY_FOLDED.get(" ".join(name.split()).casefold())
    if found is None:
        raise SamplerError(f"unknown sampler {name!r}; known samplers: {', '.join(SAMPLERS)}")
    return found


def from_a1111(sampler: str, schedule_type: str | None) -> str:
    """The accepted name for A1111's ``Sampler:`` + ``Schedule type:`` pair (for reading PNGs)."""
    if schedule_type and schedule_type not in ("Automatic", ""):
        combined = f"{sampler} {schedule_type}"
        if combined.casefold() in _BY_FOLDED:
            return _BY_FOLDED[combined.casefold()]
    return canonical_sampler(sampler)
