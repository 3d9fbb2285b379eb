"""PNG text chunks: AUTOMATIC1111's ``parameters`` infotext, plus sdfarm's own JSON.

The ``parameters`` text is written as AUTOMATIC1111 writes it, so civitai and image-metadata
readers show the prompt, seed and settings; the ``sdfarm`` chunk carries the exact job (model
reference, ids, key) for our own round trips. Pure: Pillow only enters in the writer.
"""

from __future__ import annotations

import json
from pathlib import PurePosixPath

from sdfarm.infotext import Infotext, parse_infotext
from sdfarm.samplers import SAMPLERS
from sdfarm.spec import RenderSpec

#: Name of sdfarm's own tEXt chunk.
SDFARM_CHUNK = "sdfarm"
#: Name of A1111's chunk.
PARAMETERS_CHUNK = "parameters"


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
    sampler = SAMPLERS[spec.sampler]
    params: dict[str, object | None] = {
        "Steps": spec.steps,
        "Sampler": sampler.a1111_name,
        "Schedule type": sampler.schedule_type,
        "CFG scale": format_number(spec.cfg),
        "Seed": spec.seed,
        "Size": f"{spec.width}x{spec.height}",
        "Model hash": spec.model_hash,
        "Model": model_display_name(spec.model),
        # A1111 leaves Clip skip out unless it skips something.
        "Clip skip": spec.clip_skip if spec.clip_skip > 1 else None,
        "Version": version,
    }
    line = ", ".join(f"{k}: {quote(v)}" for k, v in params.items() if v is not None)
    negative = f"\nNegative prompt: {spec.negative_prompt}" if spec.negative_prompt else ""
    return f"{spec.prompt}{negative}\n{line}".strip()


def sdfarm_chunk(spec: RenderSpec, **ids: object) -> str:
    return json.dumps({"spec": spec.as_dict(), "key": spec.key, **ids}, ensure_ascii=False,
                      sort_keys=True)


def parse_parameters(text: str) -> Infotext:
    """Read A1111's ``parameters`` text back (the grammar is in :mod:`sdfarm.infotext`)."""
    return parse_infotext(text)


def spec_from_infotext(info: Infotext, *, model: str | None = None) -> RenderSpec:
    """The RenderSpec an infotext describes (``model`` overrides the ``Model:`` name)."""
    from sdfarm.samplers import from_a1111

    p = info.params
    width, _, height = p.get("Size", "512x512").partition("x")
    return RenderSpec(
        model=model or p.get("Model", ""),
        model_hash=p.get("Model hash") or None,
        prompt=info.prompt,
        negative_prompt=info.negative_prompt,
        seed=int(p["Seed"]),
        sampler=from_a1111(p.get("Sampler", "Euler a"), p.get("Schedule type")),
        steps=int(p.get("Steps", 20)),
        cfg=float(p.get("CFG scale", 7)),
        width=int(width),
        height=int(height),
        clip_skip=int(p.get("Clip skip", 1)),
    )
