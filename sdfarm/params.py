"""The parameter table: every per-image parameter, once.

For each parameter: its type, default, bounds or allowed values, whether it can be a grid
axis, its AUTOMATIC1111 infotext key, its label in grids and tables, and whether it enters the
job's key and the batch group. Everything that reads a parameter asks this table: the job file
reader, the axis parser, ``rerun --set``, :class:`~sdfarm.spec.RenderSpec`, the infotext writer
and reader, ``show`` and the history filters. Adding a parameter means one entry here, a field
on ``RenderSpec``, a column on ``Job`` (with its migration) and its use in the renderer.

Pure: the standard library only.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Literal

from sdfarm.errors import SamplerError
from sdfarm.families import FAMILY_NAMES, PREDICTIONS
from sdfarm.samplers import (
    AUTOMATIC,
    SAMPLERS,
    SCHEDULES,
    canonical_sampler,
    canonical_schedule,
    split_sampler,
    unsupported_pair,
)

#: Seeds are stored as signed 64-bit integers; A1111 draws from 32 bits, ComfyUI from 64.
MAX_SEED = 2**63 - 1
#: Most ENSD (eta noise seed delta). A1111 takes any integer (a number field without bounds) and
#: seeds the step noise with ``seed + ENSD``; sdfarm takes 0..2**31-1, which holds every value in
#: use (NovelAI's 31337) and keeps ``seed + ENSD`` within what a torch generator takes (below
#: 2**64) for every seed.
MAX_ENSD = 2**31 - 1
#: Key ranks from here on belong to parameters added after the first key layout: such a
#: parameter enters a key only when it is not at its default, so adding one leaves every
#: earlier key (and so every image a sweep could resume from) valid.
FIRST_ADDED_KEY_RANK = 10

#: ``int`` and ``float`` are numbers with bounds; ``text`` is text (a prompt, a model
#: reference); ``sampler`` is an A1111 sampler name, ``schedule`` an A1111 schedule type;
#: ``choice`` one of a few fixed words (``Param.choices``).
Kind = Literal["int", "float", "text", "sampler", "schedule", "choice"]

#: Why a value was refused, for the reader to phrase in its own words.
Reason = Literal["type", "fraction", "range", "multiple", "empty", "unknown"]


class BadValue(ValueError):
    """A value the table refuses; the caller phrases it (a job file key, an axis value)."""

    def __init__(self, param: Param, value: object, reason: Reason, detail: str = "") -> None:
        self.param, self.value, self.reason, self.detail = param, value, reason, detail
        super().__init__(detail or f"{param.name}: {reason} {value!r}")


@dataclass(frozen=True)
class Param:
    name: str
    kind: Kind
    default: object
    #: What it is, in a few words ("denoising steps"): job file key lists, axis lists, help.
    description: str
    #: Grid labels ("Steps: 20") and tables.
    label: str
    #: Inclusive bounds of a number, and the step an integer must be a multiple of.
    low: float | None = None
    high: float | None = None
    multiple_of: int = 1
    #: Must the job file give it (there is no sensible default)?
    required: bool = False
    #: May a text be empty (or only spaces)?
    allow_empty: bool = True
    #: May it be ``None`` (then its default is ``None``: "the sampler's own", for eta)?
    allow_none: bool = False
    #: Position in the list of grid axes (the most used first), or ``None`` when it cannot
    #: vary along an axis.
    axis_rank: int | None = None
    #: The key AUTOMATIC1111 writes it under in its infotext; ``None`` for the prompts (they
    #: are the infotext's text, not a setting) and for width and height (``Size: WxH``).
    infotext: str | None = None
    #: Position in the job's key, or ``None`` when it does not change the pixels. The order is
    #: part of the key: a new parameter comes last, from ``FIRST_ADDED_KEY_RANK`` on.
    key_rank: int | None = None
    #: Position in the batch group, or ``None`` when it may differ between the images of one
    #: forward pass (prompt and seed). The order is the render order: the most expensive
    #: switch (the model) first.
    batch_rank: int | None = None
    #: The words a ``choice`` parameter takes.
    choices: tuple[str, ...] = ()
    #: Set by planning from the files another parameter names (a hash), never by a job file,
    #: an axis or ``--set`` (issue 11: VAE and embeddings).
    derived: bool = False

    @property
    def allowed(self) -> str:
        """The values it takes, in the plural: "integers from 1 to 1000"."""
        if self.kind == "int":
            what = "integers" if self.multiple_of == 1 else f"multiples of {self.multiple_of}"
            return f"{what} from {_num(self.low)} to {_num(self.high)}"
        if self.kind == "float":
            return f"numbers from {_num(self.low)} to {_num(self.high)}"
        if self.kind == "sampler":
            return "A1111 sampler names"
        if self.kind == "schedule":
            return f"A1111 schedule types ({', '.join(SCHEDULES)})"
        if self.kind == "choice":
            return ", ".join(self.choices)
        return f"{self.description}s"

    @property
    def axis_description(self) -> str:
        """What an axis of it takes: "denoising steps, integers from 1 to 1000"."""
        if self.kind in ("int", "float"):
            return f"{self.description}, {self.allowed}"
        return self.allowed

    @property
    def expected(self) -> str:
        """One value, as a job file error says it: "an integer from 1 to 1000"."""
        if self.kind == "int":
            return f"an integer from {_num(self.low)} to {_num(self.high)}"
        if self.kind == "float":
            return f"a number from {_num(self.low)} to {_num(self.high)}"
        if self.kind == "choice":
            return f"one of {', '.join(self.choices)}"
        return "a string"

    def check(self, value: object) -> object:
        """``value`` in its canonical form (a float for a float parameter, a sampler's
        accepted spelling), or :class:`BadValue`."""
        if value is None and self.allow_none:
            return None
        if self.kind in ("int", "float"):
            return self._check_number(value)
        if not isinstance(value, str):
            raise BadValue(self, value, "type")
        if self.kind == "sampler":
            try:
                return canonical_sampler(value)
            except SamplerError as exc:
                raise BadValue(self, value, "unknown", str(exc)) from None
        if self.kind == "schedule":
            try:
                return canonical_schedule(value)
            except SamplerError as exc:
                raise BadValue(self, value, "unknown", str(exc)) from None
        if self.kind == "choice":
            if value not in self.choices:
                raise BadValue(self, value, "unknown",
                               f"{value!r} is not a {self.description}; allowed: "
                               f"{', '.join(self.choices)}")
            return value
        if not self.allow_empty and not value.strip():
            raise BadValue(self, value, "empty")
        return value

    def _check_number(self, value: object) -> int | float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise BadValue(self, value, "type")
        if self.kind == "int" and isinstance(value, float):
            raise BadValue(self, value, "fraction")
        assert self.low is not None and self.high is not None
        if not self.low <= value <= self.high:
            raise BadValue(self, value, "range")
        if self.kind == "int":
            if value % self.multiple_of:
                raise BadValue(self, value, "multiple")
            return value
        return float(value)

    def parse_text(self, text: str) -> object:
        """A value typed as text (``--set steps=30``, an infotext setting): a number parameter
        reads a number when the text is one and keeps the text otherwise (``check`` then says
        what is wrong); text parameters take it as written."""
        if self.kind not in ("int", "float"):
            return text
        stripped = text.strip()
        if self.allow_none and stripped.casefold() in ("", "none", "default"):
            return None
        for kind in (int, float):
            try:
                return kind(stripped)
            except ValueError:
                continue
        return text

    def format(self, value: object) -> str:
        """A value as labels, tables and the infotext show it ("7.5", not "7.5000")."""
        if value is None:
            return "(default)"
        if self.kind == "float":
            return f"{value:g}"
        return str(value)

    def canonical(self, value: object) -> object:
        """The value as the key hashes it (an int cfg and its float are one value)."""
        if value is None:
            return None
        return float(value) if self.kind == "float" else value  # type: ignore[arg-type]


def describe(value: object) -> str:
    """A value as an error message shows it: its kind and (cut) its text."""
    kind = {str: "a string", bool: "a boolean", int: "an integer", float: "a number",
            list: "a list", dict: "a table"}.get(type(value), type(value).__name__)
    shown = repr(value)
    return f"{kind} {shown if len(shown) <= 40 else shown[:37] + '...'}"


def _num(value: float | None) -> str:
    if value == MAX_SEED:
        return "2**63-1"
    if value == MAX_ENSD:
        return "2**31-1"
    return f"{value:g}" if isinstance(value, float) else str(value)


class ParamTable(Mapping[str, Param]):
    """The parameters by name, in table order (the order of job file keys, ``--set``, ``show``)."""

    def __init__(self, *params: Param) -> None:
        self._by_name = {p.name: p for p in params}

    def __getitem__(self, name: str) -> Param:
        return self._by_name[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_name)

    def __len__(self) -> int:
        return len(self._by_name)

    def ranked(self, rank: Literal["key_rank", "batch_rank", "axis_rank"]) -> tuple[Param, ...]:
        """The parameters that have this rank, in its order."""
        having = [p for p in self.values() if getattr(p, rank) is not None]
        return tuple(sorted(having, key=lambda p: getattr(p, rank)))


    def by_infotext(self) -> dict[str, Param]:
        return {p.infotext: p for p in self.values() if p.infotext}


_SIZE = dict(low=8, high=8192, multiple_of=8, default=512)

#: Every per-image parameter. Table order is the order users see them in (job file keys,
#: ``--set``, ``show``) and the order the infotext writer appends the optional settings in,
#: which is A1111's (Variation seed, Variation seed strength, Clip skip, ENSD); the ranks fix
#: the other orders.
PARAMS = ParamTable(
    Param("model", "text", None, "model reference", "Model", required=True, allow_empty=False,
          infotext="Model", key_rank=0, batch_rank=0, axis_rank=80),
    # issue 11: VAE. A VAE file (its absolute path, as model is stored; "" is the model's own
    # VAE) replaces the model's decoder; its hash, not its path, enters the key (two paths to
    # one file are one VAE). Right after the model: A1111 writes "VAE hash" and "VAE" there.
    Param("vae_hash", "text", "", "VAE hash", "VAE hash", infotext="VAE hash", key_rank=23,
          batch_rank=10, derived=True),
    Param("vae", "text", "", "VAE file (.safetensors)", "VAE", infotext="VAE", batch_rank=11,
          axis_rank=81),
    Param("prompt", "text", None, "prompt", "Prompt", required=True, allow_empty=False,
          key_rank=1),
    Param("negative_prompt", "text", "", "negative prompt", "Negative prompt", key_rank=2,
          batch_rank=80, axis_rank=90),
    Param("sampler", "sampler", "Euler a", "A1111 sampler name", "Sampler", infotext="Sampler",
          key_rank=4, batch_rank=40, axis_rank=30),
    Param("seed", "int", 0, "seed", "Seed", low=0, high=MAX_SEED, infotext="Seed", key_rank=3,
          axis_rank=40),
    # A variation seed with strength 0 changes nothing: RenderSpec.normalized sets it to 0 then.
    Param("subseed", "int", 0, "variation seed", "Variation seed", low=0, high=MAX_SEED,
          infotext="Variation seed", key_rank=13, axis_rank=45),
    Param("subseed_strength", "float", 0.0, "variation seed strength", "Variation strength",
          low=0.0, high=1.0, infotext="Variation seed strength", key_rank=14, axis_rank=46),
    Param("steps", "int", 20, "denoising steps", "Steps", low=1, high=1000, infotext="Steps",
          key_rank=5, batch_rank=50, axis_rank=20),
    Param("cfg", "float", 7.0, "CFG scale", "CFG", low=0.0, high=50.0, infotext="CFG scale",
          key_rank=6, batch_rank=60, axis_rank=10),
    Param("width", "int", description="image width", label="Width", key_rank=7, batch_rank=20,
          axis_rank=50, **_SIZE),
    Param("height", "int", description="image height", label="Height", key_rank=8,
          batch_rank=30, axis_rank=60, **_SIZE),
    Param("clip_skip", "int", 1, "CLIP skip", "Clip skip", low=1, high=12,
          infotext="Clip skip", key_rank=9, batch_rank=70, axis_rank=70),
    Param("ensd", "int", 0, "eta noise seed delta", "ENSD", low=0, high=MAX_ENSD,
          infotext="ENSD", key_rank=12, axis_rank=76),
    # Written right after the sampler, always, as A1111 >= 1.9 does.
    Param("schedule", "schedule", AUTOMATIC, "A1111 schedule type", "Schedule type",
          infotext="Schedule type", key_rank=10, batch_rank=45, axis_rank=35),
    # None: the sampler's own (0 for DDIM, 1 for ancestral samplers). The infotext writer
    # writes it as A1111 does: "Eta DDIM" for DDIM, "Eta" otherwise.
    Param("eta", "float", None, "eta (DDIM noise)", "Eta", low=0.0, high=1.0, allow_none=True,
          infotext="Eta", key_rank=11, batch_rank=65, axis_rank=75),
    # The model's family and prediction type: detected from its files at plan time (a job
    # file may set them to correct the detection); they pick the pipeline and the scheduler.
    # Not A1111 settings: sdfarm writes them under its own infotext keys.
    # Batches never mix families: they follow the model, which leads the batch group anyway.
    Param("family", "choice", "sd1", "model family", "Family", infotext="Model family",
          key_rank=15, batch_rank=1, choices=FAMILY_NAMES),
    Param("prediction", "choice", "epsilon", "prediction type", "Prediction",
          infotext="Prediction type", key_rank=16, batch_rank=2, choices=PREDICTIONS),
    # None: the family's own (3.5 on Flux.1-dev, the only family that takes it).
    Param("guidance", "float", None, "distilled guidance (Flux)", "Guidance", low=0.0,
          high=30.0, allow_none=True, infotext="Distilled CFG Scale", key_rank=17,
          batch_rank=66, axis_rank=77),
    # None: the scheduler's own shift (SD3's 3.0; Flux's, by image size).
    Param("shift", "float", None, "flow-matching schedule shift", "Shift", low=0.0,
          high=20.0, allow_none=True, infotext="Shift", key_rank=18, batch_rank=67,
          axis_rank=78),
    # issue 11: embeddings. The textual inversion embeddings the prompts use (file stems in
    # SDFARM_EMBEDDING_DIR written as words), as A1111's "TI hashes" ("name: hash, ...");
    # a pass loads one set, so it is part of the batch group.
    Param("ti_hashes", "text", "", "textual inversion hashes", "TI hashes",
          infotext="TI hashes", key_rank=24, batch_rank=12, derived=True),
    # issue 11: hires fix and img2img. A hires scale of 0 is no hires fix (RenderSpec.normalized
    # then sets the other hires settings to their defaults); the job file's ``hires`` table
    # turns it on (sdfarm.scheduler.hires). Table order is A1111's infotext order. The hires
    # settings rank last in the batch group, so cells that differ only in them render one
    # after another and share their first pass (sdfarm.worker.hires).
    Param("hires_denoise", "float", 0.7, "hires fix denoising strength", "Hires denoise",
          low=0.0, high=1.0, infotext="Denoising strength", key_rank=28, batch_rank=93,
          axis_rank=87),
    Param("hires_scale", "float", 0.0, "hires fix upscale factor (0: no hires fix)",
          "Hires upscale", low=0.0, high=8.0, infotext="Hires upscale", key_rank=26,
          batch_rank=90, axis_rank=89),
    # 0: as many as the first pass (A1111's meaning); otherwise the steps the second pass runs.
    Param("hires_steps", "int", 0, "hires fix steps (0: same as steps)", "Hires steps", low=0,
          high=1000, infotext="Hires steps", key_rank=27, batch_rank=92, axis_rank=88),
    Param("hires_upscaler", "choice", "Latent", "hires fix upscaler", "Hires upscaler",
          infotext="Hires upscaler", key_rank=29, batch_rank=91,
          choices=("Latent", "Lanczos")),
    # The init image of img2img, made absolute at plan time; its sha256 (RenderSpec's
    # init_image_hash, beside it) enters the key, not its path. "": text to image.
    Param("init_image", "text", "", "init image (img2img)", "Init image", batch_rank=95),
    # A1111 writes it as "Denoising strength" too (sdfarm.metadata.a1111), the key it shares
    # with the hires denoise: an image has one or the other.
    Param("denoise", "float", 0.75, "img2img denoising strength", "Denoise", low=0.0,
          high=1.0, key_rank=31, batch_rank=96, axis_rank=86),
)

#: Infotext key A1111 writes eta under for DDIM.
ETA_DDIM = "Eta DDIM"


class Conflict(ValueError):
    """Values that contradict each other; ``key`` is the parameter the message names."""

    def __init__(self, key: str, problem: str) -> None:
        self.key, self.problem = key, problem
        super().__init__(f"{key}: {problem}")


def split_combined(sampler: str, schedule: str | None) -> tuple[str, str]:
    """A checked sampler name (base or combined, as ``Param.check`` returns it) and the
    schedule given with it (``None``: not given) -> ``(sampler, schedule)``.

    A combined name ("DPM++ 2M Karras") sets the schedule; given with a different one, it is a
    :class:`Conflict` naming ``schedule``.
    """
    base, named = split_sampler(sampler)
    if named is None:
        return base, schedule if schedule is not None else AUTOMATIC
    if schedule is not None and schedule != named:
        raise Conflict("schedule", f"{schedule!r} contradicts sampler {sampler!r} (sampler "
                                   f"{base!r} with schedule {named!r}); write sampler = "
                                   f"{base!r} and the schedule apart")
    return base, named


def check_combination(sampler: str, schedule: str, eta: float | None) -> str | None:
    """Why a sampler, schedule and eta cannot be rendered together (one line, naming the
    parameter at fault first: ``"schedule: ..."``), or ``None`` when they can. Names sdfarm
    does not know pass (imported images keep them; a rerun refuses them elsewhere)."""
    entry = SAMPLERS.get(sampler)
    if entry is None or schedule not in SCHEDULES:
        return None
    if schedule not in entry.schedules:
        return f"schedule: {unsupported_pair(sampler, schedule)}"
    if eta is not None and entry.eta == "fixed":
        takes = ", ".join(n for n, s in SAMPLERS.items() if s.eta in ("ddim", "ancestral"))
        return (f"eta: sampler {sampler!r} draws its noise with a fixed eta of 1 (diffusers "
                f"lets no eta be chosen for it); eta applies to {takes} (and changes nothing "
                "on deterministic samplers); leave eta unset")
    return None
