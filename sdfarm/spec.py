"""RenderSpec: every parameter that determines one image's pixels, and its key.

The fields are the parameter table's (:mod:`sdfarm.params`), with its defaults; the key and
the batch group follow the table's ranks. Pure: imports only the standard library, so
planning never touches torch.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from operator import attrgetter

from sdfarm.params import FIRST_ADDED_KEY_RANK, PARAMS
from sdfarm.samplers import AUTOMATIC, legacy_name

#: Bumped when the meaning of a parameter changes, so old keys stop matching new renders.
#: 2: prompts are read as A1111 reads them (emphasis, BREAK, chunks past 75 tokens,
#: extra-network tags left out of the encoded text). A prompt pair that reads the same both
#: ways keeps :data:`PLAIN_KEY_VERSION`: see :func:`prompt_key_version`.
KEY_VERSION = 2
#: The version of keys whose prompts encode exactly as before version 2.
PLAIN_KEY_VERSION = 1
#: Characters without which a prompt has no A1111 syntax and no extra-network tag.
_SYNTAX_CHARS = frozenset("()[]\\<")
#: Fewer characters than this cannot make more than 75 CLIP tokens: every token of CLIP's BPE
#: covers at least one non-space ASCII character.
_SHORT = 76


def _reads_as_written(text: str) -> bool:
    return (len(text) < _SHORT and text.isascii() and "BREAK" not in text
            and not _SYNTAX_CHARS.intersection(text))


def prompt_key_version(prompt: str, negative_prompt: str) -> int:
    """The key version of a prompt pair: :data:`PLAIN_KEY_VERSION` when both surely encode as
    they did before prompts were read as A1111 reads them (short ASCII text without brackets,
    escapes, ``BREAK`` or tags: bit-identical, tested), so the images of sweeps made before
    the upgrade are still reused; :data:`KEY_VERSION` otherwise. Conservative: a long plain
    prompt of at most 75 tokens takes the new version though its pixels did not change."""
    if _reads_as_written(prompt) and _reads_as_written(negative_prompt):
        return PLAIN_KEY_VERSION
    return KEY_VERSION

_KEY_PARAMS = PARAMS.ranked("key_rank")
# The key is computed for every image of a plan, so its parts are read in one call each: the
# model (its identity, apart), the parameters of the first layout, and those added later.
assert _KEY_PARAMS[0].name == "model"
_FIRST_KEY = tuple(p for p in _KEY_PARAMS[1:] if p.key_rank < FIRST_ADDED_KEY_RANK)  # type: ignore[operator]
_FIRST_KEY_VALUES = attrgetter(*(p.name for p in _FIRST_KEY))
_FIRST_KEY_FLOATS = tuple(i for i, p in enumerate(_FIRST_KEY) if p.kind == "float")
_KEY_SAMPLER_AT = next(i for i, p in enumerate(_FIRST_KEY) if p.name == "sampler")
_ADDED_KEY = tuple(p for p in _KEY_PARAMS if p.key_rank >= FIRST_ADDED_KEY_RANK)  # type: ignore[operator]
_ADDED_KEY_VALUES = attrgetter(*(p.name for p in _ADDED_KEY))
_ADDED_KEY_DEFAULTS = tuple(p.default for p in _ADDED_KEY)
_BATCH_PARAMS = PARAMS.ranked("batch_rank")
# The model leads the batch group (its hash follows it); the rest are read in one call, since
# planning computes a group for every image.
assert _BATCH_PARAMS[0].name == "model"
_BATCH_REST = attrgetter(*(p.name for p in _BATCH_PARAMS[1:]))
# Where a parameter that may be None sits in the rest (None does not sort against a number).
_BATCH_NULLABLE = tuple(i for i, p in enumerate(_BATCH_PARAMS[1:]) if p.allow_none)


#: What json.dumps(payload, ensure_ascii=False, separators=(",", ":")) uses, built once.
_KEY_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def _default(name: str):
    return PARAMS[name].default


_NO_SUBSEED = _default("subseed")
_HIRES_REST = ("hires_steps", "hires_denoise", "hires_upscaler")
_NO_HIRES = tuple(_default(name) for name in _HIRES_REST)


@dataclass(frozen=True, slots=True)
class RenderSpec:
    """One image. Two specs with the same :attr:`key` render the same pixels."""

    model: str
    prompt: str
    seed: int
    subseed: int = _default("subseed")
    subseed_strength: float = _default("subseed_strength")
    negative_prompt: str = _default("negative_prompt")
    sampler: str = _default("sampler")
    steps: int = _default("steps")
    cfg: float = _default("cfg")
    width: int = _default("width")
    height: int = _default("height")
    clip_skip: int = _default("clip_skip")
    ensd: int = _default("ensd")
    schedule: str = _default("schedule")
    eta: float | None = _default("eta")
    family: str = _default("family")
    prediction: str = _default("prediction")
    guidance: float | None = _default("guidance")
    shift: float | None = _default("shift")
    # issue 11: hires fix and img2img
    hires_denoise: float = _default("hires_denoise")
    hires_scale: float = _default("hires_scale")
    hires_steps: int = _default("hires_steps")
    hires_upscaler: str = _default("hires_upscaler")
    init_image: str = _default("init_image")
    denoise: float = _default("denoise")
    #: A1111 short hash of the weights; ``None`` while the weights are not on this machine.
    model_hash: str | None = None
    # issue 11: LoRA. Not parameters of the table: both follow from the prompt's
    # <lora:name:weight> tags (sdfarm.scheduler.loras), which are what a user writes.
    #: The LoRA set, canonical ("a:0.5,b:1", sorted by name): what a forward pass shares.
    loras: str = ""
    #: A1111's ``Lora hashes`` ("a: 0123456789ab, b: ..."): which files, in prompt order.
    lora_hashes: str = ""
    # issue 11: VAE and embeddings.
    vae: str = _default("vae")
    vae_hash: str = _default("vae_hash")
    ti_hashes: str = _default("ti_hashes")
    #: sha256 of the init image's file, read at plan time: what enters the key (the path does
    #: not: a moved file renders the same pixels).
    init_image_hash: str | None = None

    @property
    def key(self) -> str:
        """Hash of :meth:`key_text`."""
        return key_of(self.key_text())

    def key_text(self) -> str:
        """What :attr:`key` hashes: exactly the pixel-determining parameters, in the table's
        key order (a parameter added later enters as its name and value, only when it is set).

        The model enters by its hash when known (two paths to one file are one model), by its
        reference otherwise. A sampler and schedule that had a combined name before schedules
        were a parameter ("DPM++ 2M Karras") enter as that name, so their keys stay valid.
        """
        values = list(_FIRST_KEY_VALUES(self))
        for i in _FIRST_KEY_FLOATS:
            values[i] = float(values[i])
        legacy = legacy_name(self.sampler, self.schedule) if self.schedule != AUTOMATIC else None
        if legacy is not None:
            values[_KEY_SAMPLER_AT] = legacy
        model = f"hash:{self.model_hash}" if self.model_hash else f"ref:{self.model}"
        payload: list[object] = [prompt_key_version(self.prompt, self.negative_prompt), model,
                                   *values]
        added = _ADDED_KEY_VALUES(self)
        if added != _ADDED_KEY_DEFAULTS:  # most images leave them all at their defaults
            for param, value in zip(_ADDED_KEY, added):
                if value != param.default and not (legacy and param.name == "schedule"):
                    payload.append([param.name, param.canonical(value)])
        if self.loras or self.lora_hashes:  # issue 11: LoRA; keys without one stay as they were
            payload.append(["loras", self.loras, self.lora_hashes])
        if self.init_image:  # issue 11: img2img, by the image's content when known
            ref = f"sha256:{self.init_image_hash}" if self.init_image_hash else f"ref:{self.init_image}"
            payload.append(["init_image", ref])
        return _KEY_JSON.encode(payload)

    @property
    def batch_group(self) -> tuple:
        """What a forward pass shares: everything but prompt and seed, in render order (the
        most expensive switch first), so sorting by it also orders the renders."""
        # "" for an unknown hash: None would not sort against a hash; -1 for an eta left to
        # the sampler, likewise.
        rest = _BATCH_REST(self)
        for i in _BATCH_NULLABLE:
            if rest[i] is None:
                rest = (*rest[:i], -1.0, *rest[i + 1:])
        # The LoRA set last (issue 11): set_adapters between passes costs milliseconds.
        return (self.model, self.model_hash or "", *rest, self.loras)

    def normalized(self) -> RenderSpec:
        """This spec with what cannot change its pixels set to the default, so its key and its
        infotext say what the pixels say: a variation seed at strength 0 is no variation seed
        (A1111, too, writes ``Variation seed`` only at a strength above 0).

        Every reader that produces the final spec of an image calls it: planning (job file
        values and axes combined, ``scheduler.expand``), ``rerun --set``
        (``scheduler.overrides``) and the image readers of ``index`` (``metadata.generation``).
        It is not done on construction: a job file's base spec and one axis's changes are
        parts of a cell, and a subseed given there must survive until a strength axis sets
        the strength of the cell.
        """
        spec = self
        if self.subseed_strength == 0 and self.subseed != _NO_SUBSEED:
            spec = dataclasses.replace(spec, subseed=_NO_SUBSEED)
        # issue 11: hires settings without a hires fix, a denoise without an init image
        if spec.hires_scale == 0 and (spec.hires_steps, spec.hires_denoise, spec.hires_upscaler) != _NO_HIRES:
            spec = dataclasses.replace(spec, **dict(zip(_HIRES_REST, _NO_HIRES)))
        if not spec.init_image and spec.denoise != _default("denoise"):
            spec = dataclasses.replace(spec, denoise=_default("denoise"))
        return spec

    def replace(self, **changes: object) -> RenderSpec:
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)


def key_of(text: str) -> str:
    """A key from its text (planning hashes a row's text once per seed: ``scheduler.plan``)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


#: The fields a spec has: the table's parameters and the model hash.
SPEC_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(RenderSpec))
