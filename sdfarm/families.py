"""Model families: the architectures sdfarm renders, and what each needs and allows.

A family decides the diffusers pipeline class, the defaults a job file may leave out (size,
steps, CFG, sampler, Flux's distilled guidance) and which parameters mean something to it.
Pure (standard library only): planning reads it to fill in defaults and refuse what a family
does not use, the worker reads it to pick the pipeline class.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Every family sdfarm renders, as ``family =`` and ``history --family`` spell them.
FAMILY_NAMES = ("sd1", "sd2", "sdxl", "flux-dev", "flux-schnell", "sd3")

#: Prediction types: what the denoiser predicts. ``flow`` is Flux's and SD3's flow matching.
PREDICTIONS = ("epsilon", "v", "flow")

#: The samplers of flow-matching families: diffusers' flow-matching Euler, the scheduler these
#: models ship with. The A1111 noise-prediction samplers do not apply to them.
FLOW_SAMPLERS = ("Euler",)


@dataclass(frozen=True)
class Family:
    name: str
    #: As people name it: "SDXL", "Flux.1-dev".
    title: str
    #: The diffusers text-to-image pipeline class.
    pipeline: str
    #: Side of the default (square) image.
    size: int
    steps: int
    cfg: float
    sampler: str
    #: Prediction types it takes; the first is what a model of it predicts unless detected
    #: or set otherwise.
    predictions: tuple[str, ...]
    #: The samplers that apply; ``None``: every A1111 sampler sdfarm knows.
    samplers: tuple[str, ...] | None = None
    #: Flux's distilled guidance by default; ``None`` where the model has no guidance input.
    guidance: float | None = None
    #: Optional parameters it uses (others must stay at their defaults).
    uses: frozenset[str] = frozenset()
    #: Side of the default image of a v-prediction model, where it differs (SD 2.x 768-v).
    v_size: int | None = None
    #: Width and height must be multiples of it (the VAE's 8, times the latent patch size).
    size_multiple: int = 8

    def default_size(self, prediction: str) -> int:
        return self.v_size if prediction == "v" and self.v_size else self.size


_CLIP_FAMILY = frozenset({"negative_prompt", "clip_skip", "eta"})
#: issue 11: the hires fix and img2img run through diffusers' img2img pipelines of these
#: UNet families (sdfarm.worker.hires).
_TWO_PASS = frozenset({"hires_scale", "init_image"})

FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family("sd1", "SD 1.x", "StableDiffusionPipeline", 512, 20, 7.0, "Euler a",
           ("epsilon", "v"), uses=_CLIP_FAMILY | _TWO_PASS),
    Family("sd2", "SD 2.x", "StableDiffusionPipeline", 512, 20, 7.0, "Euler a",
           ("epsilon", "v"), uses=_CLIP_FAMILY | _TWO_PASS, v_size=768),
    # SDXL already encodes from the penultimate CLIP layer; A1111's clip skip does not apply.
    Family("sdxl", "SDXL", "StableDiffusionXLPipeline", 1024, 20, 7.0, "Euler a",
           ("epsilon", "v"), uses=frozenset({"negative_prompt", "eta"}) | _TWO_PASS),
    # Flux is guidance-distilled: CFG 1 turns real CFG (and with it the negative prompt) off.
    Family("flux-dev", "Flux.1-dev", "FluxPipeline", 1024, 28, 1.0, "Euler", ("flow",),
           samplers=FLOW_SAMPLERS, guidance=3.5,
           uses=frozenset({"negative_prompt", "guidance", "shift"}), size_multiple=16),
    Family("flux-schnell", "Flux.1-schnell", "FluxPipeline", 1024, 4, 1.0, "Euler", ("flow",),
           samplers=FLOW_SAMPLERS, uses=frozenset({"negative_prompt", "shift"}),
           size_multiple=16),
    Family("sd3", "SD 3.x", "StableDiffusion3Pipeline", 1024, 28, 4.5, "Euler", ("flow",),
           samplers=FLOW_SAMPLERS, uses=frozenset({"negative_prompt", "shift"}),
           size_multiple=16),
)}

#: Parameters whose default comes from the family when a job file leaves them out.
FAMILY_DEFAULTS = ("width", "height", "steps", "cfg", "sampler", "guidance")

#: Optional parameters that only some families use, and each one's value that means "unused".
OPTIONAL_PARAMS: dict[str, object] = {
    "negative_prompt": "", "clip_skip": 1, "eta": None, "guidance": None, "shift": None,
    "hires_scale": 0.0, "init_image": "",  # issue 11
}


def family_defaults(name: str, prediction: str) -> dict[str, object]:
    """The values of :data:`FAMILY_DEFAULTS` for a model of family ``name``."""
    family = FAMILIES[name]
    size = family.default_size(prediction)
    return {"width": size, "height": size, "steps": family.steps, "cfg": family.cfg,
            "sampler": family.sampler, "guidance": family.guidance}


def default_prediction(name: str) -> str:
    return FAMILIES[name].predictions[0]


def family_problem(name: str, prediction: str, values: dict[str, object]) -> str | None:
    """Why a model of family ``name`` cannot render these parameter values (one line, naming
    the parameter first: ``"sampler: ..."``), or ``None`` when it can.

    ``values`` holds some of: sampler, schedule and the :data:`OPTIONAL_PARAMS`.
    """
    family = FAMILIES[name]
    if prediction not in family.predictions:
        return (f"prediction: {family.title} models do not take prediction {prediction!r}; "
                f"they take {', '.join(family.predictions)}")
    sampler = values.get("sampler")
    if family.samplers is not None and sampler is not None and sampler not in family.samplers:
        return (f"sampler: {sampler!r} does not apply to {family.title} models (flow "
                f"matching); they take {', '.join(family.samplers)}")
    for side in ("width", "height"):
        value = values.get(side)
        if isinstance(value, int) and value % family.size_multiple:
            return (f"{side}: {family.title} models need a multiple of {family.size_multiple}, "
                    f"got {value}")
    schedule = values.get("schedule")
    if family.samplers is not None and schedule not in (None, "Automatic"):
        return (f"schedule: {family.title} models follow their own flow-matching schedule; "
                f"leave schedule at Automatic (set shift to bend it)")
    for param, unused in OPTIONAL_PARAMS.items():
        if param in values and values[param] != unused and param not in family.uses:
            return f"{param}: {_unused_reason(family, param)}"
    if ("negative_prompt" in values and values["negative_prompt"] and "cfg" in values
            and family.pipeline == "FluxPipeline" and float(values["cfg"]) <= 1.0):  # type: ignore[arg-type]
        return (f"negative_prompt: {family.title} uses a negative prompt only with real CFG, "
                f"cfg above 1 (its default 1 turns it off); set cfg (e.g. 3.5) or remove it")
    return None


def _unused_reason(family: Family, param: str) -> str:
    if param == "clip_skip":
        if family.name == "sdxl":
            return ("SDXL models already encode prompts from the penultimate CLIP layer "
                    "(A1111's clip skip does not apply to them); remove clip_skip")
        return f"{family.title} models do not use CLIP skip; remove clip_skip"
    if param == "guidance":
        users = ", ".join(f.name for f in FAMILIES.values() if "guidance" in f.uses)
        return (f"distilled guidance applies to {users} models only; {family.title} models "
                f"are guided by cfg; remove guidance")
    if param == "shift":
        users = ", ".join(f.name for f in FAMILIES.values() if "shift" in f.uses)
        return f"shift applies to flow-matching models ({users}); remove shift"
    if param == "eta":
        return f"{family.title} models use a deterministic flow-matching sampler; remove eta"
    return f"{family.title} models do not use {param}; remove it"
