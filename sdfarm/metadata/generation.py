"""How an image says it was made: its text chunks turned into a RenderSpec (for ``sdfarm index``).

sdfarm's own ``sdfarm`` chunk is exact (model reference, sampler as planned); otherwise the
A1111 ``parameters`` text is read, as written by AUTOMATIC1111, Forge, SD.Next, Fooocus or
sdfarm; otherwise another tool's own JSON (ComfyUI's graph, InvokeAI, NovelAI, SwarmUI, Fooocus),
each read by its module into a :class:`Reading` that is typed here like the A1111 settings.
Settings sdfarm does not model (hires fix, LoRA hashes, ADetailer, ...) are kept as extras, and
sampler names sdfarm cannot render are recorded as written: indexing records what happened, a
rerun is where an unknown sampler becomes an error. Pure: standard library only.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Literal

from sdfarm.errors import ImageMetadataError, SamplerError
from sdfarm.metadata import invokeai, novelai
from sdfarm.metadata.a1111 import (
    MODEL_HASH,
    PARAMETERS_CHUNK,
    SCHEDULE_TYPE,
    SDFARM_CHUNK,
    SIZE,
)
from sdfarm.metadata.comfyui import read_comfyui
from sdfarm.metadata.fooocus import is_fooocus, read_fooocus
from sdfarm.metadata.infotext import Infotext, parse_infotext
from sdfarm.metadata.reading import Reading, Tool, load_json_object
from sdfarm.metadata.swarmui import read_swarmui
from sdfarm.params import ETA_DDIM, Param
from sdfarm.params import PARAMS as P
from sdfarm.samplers import AUTOMATIC, canonical_schedule, split_sampler
from sdfarm.scheduler.loras import LORA_HASHES, LoraError, canonical_set, lora_uses
from sdfarm.spec import SPEC_FIELDS, RenderSpec

#: Settings every A1111-style writer puts in the settings line; without them there is no job.
#: (SD.Next leaves out ``Sampler:`` when it used the model's default one.)
REQUIRED = (P["steps"].infotext, P["cfg"].infotext, P["seed"].infotext, SIZE)
NO_PARAMETERS = ("no generation parameters (none of the text that A1111, ComfyUI, InvokeAI, "
                 "NovelAI, SwarmUI, Fooocus or sdfarm write)")
#: The sampler of an image that does not say which it was.
UNKNOWN_SAMPLER = "unknown"
#: What the JSON of other tools must give, as RenderSpec names them.
REQUIRED_VALUES = ("prompt", "seed", "steps", "cfg", "width", "height")
#: The table's parameters by infotext key: each becomes a column.
_BY_INFOTEXT = P.by_infotext()
#: Settings that become columns; every other one is kept in :attr:`ImageGeneration.extra`.
MAPPED = frozenset({*REQUIRED, *_BY_INFOTEXT, SCHEDULE_TYPE, ETA_DDIM, MODEL_HASH, LORA_HASHES})
#: What an imported image may hold, beyond what sdfarm renders: other tools write seeds from
#: the whole signed 64-bit range (the column's), and steps and CLIP skip past our limits.
#: Indexing records what happened; a rerun is where a value sdfarm cannot render is refused.
IMPORT_BOUNDS: dict[str, tuple[int, int]] = {
    "seed": (-(2**63), 2**63 - 1),
    "subseed": (-(2**63), 2**63 - 1),
    "steps": (1, 10_000),
    "clip_skip": (1, 100),
}
#: Column widths of the jobs table (PostgreSQL enforces them).
MAX_SAMPLER, MAX_SCHEDULE, MAX_MODEL, MAX_HASH = 64, 32, 1024, 16
#: Image sizes an imported image may give.
MAX_SIDE = 1 << 16
_HEX = re.compile(r"^[0-9a-f]+$")
_SIZE = re.compile(r"^\s*(\d+)\s*x\s*(\d+)\s*$")


@dataclass(frozen=True)
class ImageGeneration:
    spec: RenderSpec
    #: Which chunk it came from ("parameters": A1111's text), or which tool's JSON.
    source: Literal["sdfarm", "parameters"] | Tool
    model_config: str | None = None
    #: Settings of the image that sdfarm has no column for, as written.
    extra: dict[str, str] = field(default_factory=dict)


def generation_from_chunks(chunks: dict[str, str]) -> ImageGeneration:
    """What the text chunks of one image say; :class:`ImageMetadataError` when they say
    nothing usable (no parameters, or parameters missing a setting or with a bad value)."""
    problem = None
    if SDFARM_CHUNK in chunks:
        try:
            return generation_from_sdfarm_chunk(chunks[SDFARM_CHUNK])
        except ImageMetadataError as exc:
            problem = exc  # the A1111 text may still be good
    if PARAMETERS_CHUNK in chunks:
        text = chunks[PARAMETERS_CHUNK]
        if text.lstrip().startswith("{"):  # SwarmUI's and Fooocus's JSON
            return generation_from_reading(_json_parameters(text))
        return generation_from_infotext(parse_infotext(text))
    if problem is not None:
        raise problem
    if invokeai.CHUNK in chunks:
        return generation_from_reading(invokeai.read_invokeai(chunks[invokeai.CHUNK]))
    if "prompt" in chunks:
        return generation_from_reading(read_comfyui(chunks["prompt"]))
    if novelai.is_novelai(chunks):
        return generation_from_reading(novelai.read_novelai(chunks))
    if "workflow" in chunks:
        raise ImageMetadataError("ComfyUI 'workflow' without the 'prompt' graph of its run: "
                                 "the image does not record the values it was made with")
    raise ImageMetadataError(NO_PARAMETERS)


def _json_parameters(text: str) -> Reading:
    where = "'parameters' JSON"
    data = load_json_object(text, where)
    if "sui_image_params" in data:
        return read_swarmui(data)
    if is_fooocus(data):
        return read_fooocus(data)
    raise ImageMetadataError(f"{where} of an unknown tool (neither SwarmUI's "
                             "'sui_image_params' nor Fooocus's)")


def generation_from_sdfarm_chunk(text: str) -> ImageGeneration:
    try:
        data = json.loads(text)
        raw = data["spec"]
        values = {name: raw[name] for name in SPEC_FIELDS if name in raw}
        if "schedule" not in values and isinstance(values.get("sampler"), str):
            # Written before schedules were a parameter: "DPM++ 2M Karras" was one name.
            values["sampler"], values["schedule"] = sampler_as_written(values["sampler"], None)
        spec = RenderSpec(**values)
    except (ValueError, KeyError, TypeError) as exc:
        raise ImageMetadataError(f"malformed 'sdfarm' chunk: {exc}") from None
    for param in P.values():
        value = getattr(spec, param.name)
        kind = {"int": int, "float": (int, float)}.get(param.kind, str)
        if value is None and param.allow_none:
            continue
        if isinstance(value, bool) or not isinstance(value, kind):
            raise ImageMetadataError(f"malformed 'sdfarm' chunk: {param.name} is {value!r}")
    canonical = {p.name: p.canonical(getattr(spec, p.name)) for p in P.values()}
    config = data.get("model_config")
    return _checked(spec.replace(**canonical).normalized(), "'sdfarm' chunk", "sdfarm",
                    config if isinstance(config, str) else None)


def generation_from_infotext(info: Infotext) -> ImageGeneration:
    p = _known_spelling(info.params)
    if info.settings_line is None:
        raise ImageMetadataError("malformed 'parameters' text: no settings line "
                                 "(Steps: ..., Sampler: ..., Seed: ...)")
    missing = [key for key in REQUIRED if key not in p]
    if missing:
        raise ImageMetadataError(f"malformed 'parameters' text: no {', '.join(missing)}")
    size = _SIZE.match(p[SIZE])
    if size is None:
        raise ImageMetadataError(f"malformed 'parameters' text: Size {p['Size']!r} is not WIDTHxHEIGHT")
    extra = {k: v for k, v in p.items() if k not in MAPPED}
    model_hash = p.get(MODEL_HASH, "").strip().lower() or None
    if model_hash is not None and (len(model_hash) > MAX_HASH or not _HEX.match(model_hash)):
        extra[MODEL_HASH], model_hash = p[MODEL_HASH], None
    if info.template is not None:
        extra["Template"] = info.template
    if info.negative_template is not None:
        extra["Negative Template"] = info.negative_template
    values = {param.name: _setting(p, param) for key, param in _BY_INFOTEXT.items() if key in p}
    # issue 11: a VAE hash or name that does not fit its column is kept as written.
    if "vae_hash" in values:
        values["vae_hash"] = str(values["vae_hash"]).strip().lower()
        if len(values["vae_hash"]) > MAX_HASH or not _HEX.match(values["vae_hash"]):
            extra[P["vae_hash"].infotext] = str(values.pop("vae_hash"))  # type: ignore[index]
    if len(str(values.get("vae", ""))) > MAX_MODEL or (values.get("vae") and
                                                       not values.get("vae_hash")):
        # Without its hash a VAE's name cannot enter the key: it says which file, not what.
        extra[P["vae"].infotext] = str(values.pop("vae"))  # type: ignore[index]
    for param in P.values():  # a family or prediction sdfarm does not know: kept as written
        if param.kind == "choice" and values.get(param.name, param.default) not in param.choices:
            extra[param.infotext] = str(values.pop(param.name))  # type: ignore[index]
    _hires_as_read(p, values, extra)  # issue 11
    if "family" not in values:
        # Without the family these say nothing sdfarm can render with: Forge writes its
        # "Distilled CFG Scale" on SDXL images too. Kept as written.
        for name in ("guidance", "shift"):
            if name in values:
                extra[P[name].infotext] = p[P[name].infotext]  # type: ignore[index]
                del values[name]
    if ETA_DDIM in p:
        values["eta"] = _number(p, ETA_DDIM)
    values["model"] = _bounded(p.get(P["model"].infotext, ""), "Model", MAX_MODEL)
    sampler, schedule = sampler_as_written(p.get(P["sampler"].infotext, UNKNOWN_SAMPLER),
                                           p.get(SCHEDULE_TYPE))
    values["sampler"] = _bounded(sampler, "Sampler", MAX_SAMPLER)
    values["schedule"] = _bounded(schedule, SCHEDULE_TYPE, MAX_SCHEDULE)
    spec = RenderSpec(**values, model_hash=model_hash, prompt=info.prompt,
                      negative_prompt=info.negative_prompt, width=int(size.group(1)),
                      height=int(size.group(2)))
    spec = _with_loras(spec, p.get(LORA_HASHES, ""))
    return _checked(spec.normalized(), "'parameters' text", "parameters", None, extra)


def generation_from_reading(r: Reading) -> ImageGeneration:
    """The RenderSpec of another tool's values, typed and bounded as the A1111 settings are."""
    missing = [name for name in REQUIRED_VALUES if r.values.get(name) is None]
    if missing:
        raise r.problem(f"no {', '.join(missing)}")
    v = r.values
    values: dict[str, object] = {
        "prompt": _text(r, v, "prompt"), "negative_prompt": _text(r, v, "negative_prompt"),
        "seed": _int_value(r, v, "seed", *IMPORT_BOUNDS["seed"]),
        "steps": _int_value(r, v, "steps", *IMPORT_BOUNDS["steps"]),
        "cfg": _float_value(r, v, "cfg"),
        "width": _int_value(r, v, "width", 1, MAX_SIDE),
        "height": _int_value(r, v, "height", 1, MAX_SIDE),
        "model": _bounded(_text(r, v, "model"), "Model", MAX_MODEL),
    }
    if v.get("clip_skip") is not None:
        values["clip_skip"] = _int_value(r, v, "clip_skip", *IMPORT_BOUNDS["clip_skip"])
    sampler, schedule = sampler_as_written(_text(r, v, "sampler") or UNKNOWN_SAMPLER,
                                           _text(r, v, "schedule") or None)
    values["sampler"] = _bounded(sampler, "Sampler", MAX_SAMPLER)
    values["schedule"] = _bounded(schedule, SCHEDULE_TYPE, MAX_SCHEDULE)
    model_hash = v.get("model_hash")
    if not (isinstance(model_hash, str) and len(model_hash) <= MAX_HASH and _HEX.match(model_hash)):
        model_hash = None
    spec = RenderSpec(**values, model_hash=model_hash)  # type: ignore[arg-type]
    return _checked(spec.normalized(), r.where, r.tool, None, dict(r.extra))


def _with_loras(spec: RenderSpec, hashes: str) -> RenderSpec:
    """issue 11: LoRA. The image's LoRA set from its prompt's tags, and its ``Lora hashes`` as
    written. Tags sdfarm cannot apply (a hypernetwork) leave the set empty: indexing records
    what the image says; a rerun is where a LoRA is looked for."""
    try:
        loras = canonical_set(lora_uses(spec.prompt))
    except LoraError:
        loras = ""
    return spec.replace(loras=loras, lora_hashes=hashes.strip())


def _checked(spec: RenderSpec, where: str, source: str, config: str | None,
             extra: dict[str, str] | None = None) -> ImageGeneration:
    """The image's generation, unless a text holds a NUL character, which PostgreSQL's text
    columns refuse (the whole batch of the run would fail with it)."""
    for name, value in spec.as_dict().items():
        if isinstance(value, str) and "\0" in value:
            raise ImageMetadataError(f"malformed {where}: {name} holds a NUL character")
    return ImageGeneration(spec, source, config, extra or {})  # type: ignore[arg-type]


def _text(r: Reading, values: dict[str, object], name: str) -> str:
    value = values.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise r.problem(f"{name} {value!r:.80} is not text")
    return value


def _int_value(r: Reading, values: dict[str, object], name: str, low: int, high: int) -> int:
    """An integer as JSON writers give one: a number (``20.0`` too) or a string of digits."""
    value = values[name]
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    elif isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int):
        raise r.problem(f"{name} {value!r:.80} is not an integer")
    if not low <= value <= high:
        raise r.problem(f"{name} {value} is outside {low}..{high}")
    return value


def _float_value(r: Reading, values: dict[str, object], name: str) -> float:
    value = values[name]
    number = None
    if isinstance(value, (int, float, str)) and not isinstance(value, bool):
        try:
            number = float(value)
        except ValueError:
            pass
    if number is None or number != number or number in (float("inf"), float("-inf")):
        raise r.problem(f"{name} {value!r:.80} is not a number")
    return number


def _known_spelling(params: dict[str, str]) -> dict[str, str]:
    """The settings with each key sdfarm reads in its A1111 spelling: some writers differ in
    letter case ("CFG Scale"). The exact spelling wins when both are there."""
    known = {key.casefold(): key for key in (*MAPPED, P["sampler"].infotext)}
    out = {}
    for key, value in params.items():
        canonical = known.get(key.casefold(), key)
        out[key if canonical != key and canonical in params else canonical] = value
    return out


def sampler_as_written(sampler: str, schedule_type: str | None) -> tuple[str, str]:
    """(sampler, schedule) as sdfarm names them when it knows them; otherwise as the image
    gives them (an unknown schedule such as "Align Your Steps" is kept, so a rerun refuses it
    rather than silently rendering another). A combined name ("DPM++ 2M Karras", as A1111
    wrote them before 1.9) is split."""
    name = " ".join(sampler.split())
    written = " ".join((schedule_type or "").split())
    try:
        schedule = canonical_schedule(written) if written else AUTOMATIC
    except SamplerError:
        schedule = written
    try:
        base, named = split_sampler(name)
    except SamplerError:
        return name, schedule
    if named is not None and schedule in (AUTOMATIC, named):
        return base, named
    if named is not None:  # "DPM++ 2M Karras" with another schedule: keep it as written
        return name, schedule
    return base, schedule


#: issue 11: the hires fix's infotext keys, as A1111 writes them.
_HIRES = tuple(P[name].infotext for name in ("hires_denoise", "hires_scale", "hires_steps",
                                             "hires_upscaler"))


def _hires_as_read(p: dict[str, str], values: dict[str, object], extra: dict[str, str]) -> None:
    """Keep the hires settings only when sdfarm can render them: ``Denoising strength``
    without ``Hires upscale`` is an img2img image's (its init image is not known here), and a
    hires upscaler sdfarm lacks (an ESRGAN) leaves the whole hires fix as written."""
    upscaler = P["hires_upscaler"].infotext
    if P["hires_scale"].infotext in p and upscaler not in extra and values.get(
            "hires_scale", 0) != 0:
        return
    for key in _HIRES:
        if key in p:
            extra[key] = p[key]
            values.pop(_BY_INFOTEXT[key].name, None)  # type: ignore[index]
    # In the image's order, as the other extras are.
    order = {key: n for n, key in enumerate(p)}
    kept = sorted(extra.items(), key=lambda item: order.get(item[0], len(order)))
    extra.clear()
    extra.update(kept)


def _setting(p: dict[str, str], param: Param) -> object:
    """A number setting, typed by the table, within what an imported image may hold."""
    if param.kind == "float":
        return _number(p, param.infotext)  # type: ignore[arg-type]
    if param.kind == "int":
        return _integer(p, param.infotext, *IMPORT_BOUNDS.get(param.name, (-(2**63), 2**63 - 1)))
    return p[param.infotext]


def _integer(p: dict[str, str], key: str, low: int, high: int) -> int:
    try:
        value = int(p[key].strip())
    except ValueError:
        raise ImageMetadataError(f"malformed 'parameters' text: {key} {p[key]!r} is not an integer") from None
    if not low <= value <= high:
        raise ImageMetadataError(f"malformed 'parameters' text: {key} {value} is outside {low}..{high}")
    return value


def _number(p: dict[str, str], key: str) -> float:
    try:
        value = float(p[key].strip())
    except ValueError:
        raise ImageMetadataError(f"malformed 'parameters' text: {key} {p[key]!r} is not a number") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise ImageMetadataError(f"malformed 'parameters' text: {key} {p[key]!r} is not a number")
    return value


def _bounded(value: str, key: str, limit: int) -> str:
    if len(value) > limit:
        raise ImageMetadataError(f"malformed 'parameters' text: {key} is longer than {limit} characters")
    return value
