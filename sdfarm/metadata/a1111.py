"""PNG text chunks: AUTOMATIC1111's ``parameters`` infotext, plus sdfarm's own JSON.

The ``parameters`` text is written as AUTOMATIC1111 writes it, so civitai and image-metadata
readers show the prompt, seed and settings; the ``sdfarm`` chunk carries the exact job (model
reference, ids, key) for our own round trips. Pure: Pillow only enters in the writer.
"""

from __future__ import annotations

import json
from pathlib import PurePosixPath

from sdfarm.params import ETA_DDIM
from sdfarm.params import PARAMS as P
from sdfarm.samplers import SAMPLERS
from sdfarm.scheduler.loras import LORA_HASHES
from sdfarm.spec import RenderSpec

#: Name of sdfarm's own tEXt chunk.
SDFARM_CHUNK = "sdfarm"
#: Name of A1111's chunk.
PARAMETERS_CHUNK = "parameters"
#: Infotext settings that are not one parameter of the table.
SIZE, MODEL_HASH = "Size", "Model hash"
#: A1111 >= 1.9 writes the schedule apart: ``Sampler: DPM++ 2M, Schedule type: Karras``.
SCHEDULE_TYPE = P["schedule"].infotext
_ALWAYS_WRITTEN = frozenset({"steps", "sampler", "schedule", "cfg", "seed", "model"})
#: Parameters written whenever another one is not at its default, even at their own default:
#: A1111 writes ``Variation seed: 0`` whenever the strength is above 0.
_WRITTEN_WITH = {"subseed": "subseed_strength",
                 # issue 11: A1111 writes the hires denoise and upscaler whenever hires is on.
                 "hires_denoise": "hires_scale", "hires_upscaler": "hires_scale"}


def quote(value: object) -> str:
    """A1111's quoting: a value with a comma, colon or newline is written as a JSON string."""
    text = str(value)
    if "," not in text and "\n" not in text and ":" not in text:
        return text
    return json.dumps(text, ensure_ascii=False)


def format_number(value: float) -> str:
    return f"{value:g}"


def model_display_name(model: str) -> str:
    """What A1111 writes as ``Model:``: a checkpoint's file or folder name without extension.

    Built-in models and Hugging Face repo ids are written as referenced.
    """
    path = PurePosixPath(model)
    if path.suffix in (".safetensors", ".ckpt", ".pt", ".pth", ".bin"):
        return path.stem
    if model.startswith(("/", "./", "../", "~")):
        return path.name
    return model


def a1111_parameters(spec: RenderSpec, *, version: str | None = None) -> str:
    """The ``parameters`` text for ``spec``, byte for byte as AUTOMATIC1111 composes it."""
    line = ", ".join(f"{k}: {quote(v)}" for k, v in infotext_settings(spec, version))
    negative = f"\nNegative prompt: {spec.negative_prompt}" if spec.negative_prompt else ""
    return f"{spec.prompt}{negative}\n{line}".strip()


def infotext_settings(spec: RenderSpec, version: str | None = None) -> list[tuple[str, str]]:
    """The settings line's items in A1111's order: the settings it always writes, then every
    other parameter of the table that has an infotext key, only when it is not at its default
    (as A1111 leaves out ``Clip skip: 1``), in table order: ``Variation seed``, ``Variation
    seed strength``, ``Clip skip``, ``ENSD``, ``Eta``, as A1111 orders them. Eta is ``Eta DDIM``
    for DDIM, as A1111 writes it."""
    items = [
        (P["steps"].infotext, P["steps"].format(spec.steps)),
        (P["sampler"].infotext, spec.sampler),
        (SCHEDULE_TYPE, spec.schedule),
        (P["cfg"].infotext, P["cfg"].format(spec.cfg)),
        (P["seed"].infotext, P["seed"].format(spec.seed)),
        (SIZE, f"{spec.width}x{spec.height}"),
    ]
    if spec.model_hash:
        items.append((MODEL_HASH, spec.model_hash))
    items.append((P["model"].infotext, model_display_name(spec.model)))
    for param in P.values():
        value = getattr(spec, param.name)
        partner = _WRITTEN_WITH.get(param.name)
        set_with = partner is not None and getattr(spec, partner) != P[partner].default
        if (param.infotext and param.name not in _ALWAYS_WRITTEN
                and (value != param.default or set_with)):
            items.append((_infotext_key(param.name, spec), _infotext_value(param.name, value)))
    if spec.lora_hashes:  # issue 11: LoRA, where A1111 puts its extra generation params
        items.append((LORA_HASHES, spec.lora_hashes))
    if spec.init_image:  # issue 11: img2img's denoise, under the key A1111 gives it
        items.append((P["hires_denoise"].infotext, P["denoise"].format(spec.denoise)))
    if version:
        items.append(("Version", version))
    return items  # type: ignore[return-value]


def _infotext_value(name: str, value: object) -> str:
    if name == "vae":  # issue 11: A1111 writes the VAE file's name (os.path.basename)
        return PurePosixPath(str(value).replace("\\", "/")).name
    return P[name].format(value)


def _infotext_key(name: str, spec: RenderSpec) -> str:
    sampler = SAMPLERS.get(spec.sampler)
    if name == "eta" and sampler is not None and sampler.eta == "ddim":
        return ETA_DDIM
    return P[name].infotext  # type: ignore[return-value]


def sdfarm_chunk(spec: RenderSpec, **ids: object) -> str:
    return json.dumps({"spec": spec.as_dict(), "key": spec.key, **ids}, ensure_ascii=False,
                      sort_keys=True)
