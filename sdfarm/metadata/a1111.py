"""PNG text chunks: AUTOMATIC1111's ``parameters`` infotext, plus sdfarm's own JSON.

The ``parameters`` text is written as AUTOMATIC1111 writes it, so civitai and image-metadata
readers show the prompt, seed and settings; the ``sdfarm`` chunk carries the exact job (model
reference, ids, key) for our own round trips. Pure: Pillow only enters in the writer.
"""

from __future__ import annotations

import json
from pathlib import PurePosixPath

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
