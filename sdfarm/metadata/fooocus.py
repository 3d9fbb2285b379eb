"""Fooocus's own metadata scheme: JSON in the PNG's ``parameters`` chunk (with a
``fooocus_scheme`` chunk saying "fooocus"), or in a JPEG's EXIF UserComment. The prompt that
made the pixels is ``full_prompt`` (the user's prompt with its styles and the Fooocus V2
expansion), joined as Fooocus joins it for A1111's scheme. Pure: standard library only."""

from __future__ import annotations

import re

from sdfarm.metadata.reading import (
    Reading,
    as_list,
    as_text,
    checkpoint_name,
    is_set,
    lora_list,
)
from sdfarm.metadata.samplernames import read_k_diffusion

WHERE = "Fooocus 'parameters' JSON"
_RESOLUTION = re.compile(r"^\(\s*'?(\d+)'?\s*,\s*'?(\d+)'?\s*\)$")
_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")
#: Keys read below, or that say nothing about the pixels.
_READ = {"prompt", "negative_prompt", "full_prompt", "full_negative_prompt", "seed", "steps",
         "guidance_scale", "resolution", "sampler", "scheduler", "base_model",
         "base_model_hash", "loras", "version", "metadata_scheme", "styles", "performance",
         "created_by"}


def is_fooocus(data: dict) -> bool:
    return isinstance(data.get("version"), str) and data["version"].startswith("Fooocus") or (
        "base_model" in data and "guidance_scale" in data and "full_prompt" in data)


def read_fooocus(data: dict) -> Reading:
    r = Reading("fooocus", WHERE, extra={"App": "Fooocus"})
    for theirs, full, ours in (("prompt", "full_prompt", "prompt"),
                               ("negative_prompt", "full_negative_prompt", "negative_prompt")):
        parts = data.get(full)
        if isinstance(parts, list) and all(isinstance(p, str) for p in parts) and parts:
            r.values[ours] = ", ".join(parts)
            if is_set(data.get(theirs)) and data[theirs] != r.values[ours]:
                r.extra[f"Raw {ours.replace('_', ' ')}"] = as_text(data.get(theirs, ""))
        elif theirs in data:
            r.values[ours] = data[theirs]
    names = {"seed": "seed", "steps": "steps", "guidance_scale": "cfg"}
    r.values.update({ours: data[theirs] for theirs, ours in names.items() if theirs in data})
    size = _RESOLUTION.match(str(data.get("resolution", "")).strip())
    if size is not None:
        r.values["width"], r.values["height"] = int(size.group(1)), int(size.group(2))
    read_k_diffusion(data, r.values)
    if isinstance(data.get("base_model"), str):
        r.values["model"] = checkpoint_name(data["base_model"])
    digest = data.get("base_model_hash")
    if isinstance(digest, str) and _SHA256.match(digest):
        r.values["model_hash"] = digest[:10].lower()  # A1111's short hash of the same file
    loras = [(item[0], item[1]) for item in as_list(data.get("loras"))
             if isinstance(item, list) and len(item) >= 2]
    if loras:
        r.extra["Lora"] = lora_list(loras)
    for key in ("version", "styles", "performance"):
        if is_set(data.get(key)):
            r.extra[key.capitalize()] = as_text(data[key])
    unset = {"vae"} if str(data.get("vae", "")).startswith("Default") else set()
    if not is_set(data.get("refiner_model")):
        unset.add("refiner_switch")
    r.extra.update({k: as_text(v) for k, v in data.items()
                    if k not in _READ and k not in unset and is_set(v)})
    return r
