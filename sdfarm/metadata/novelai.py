"""NovelAI's PNG chunks: the prompt in ``Description``, the model in ``Source`` ("NovelAI
Diffusion V3 4BDE2A90": a name and a hash), the settings as JSON in ``Comment``.
Pure: standard library only."""

from __future__ import annotations

import re

from sdfarm.metadata.reading import Reading, as_text, is_set, load_json_object
from sdfarm.metadata.samplernames import from_k_diffusion

CHUNK = "Comment"
WHERE = "NovelAI 'Comment' chunk"
_SOURCE = re.compile(r"^(.*?)\s+([0-9A-Fa-f]{8})$")
#: Comment keys read below, or that say nothing about the pixels (a request's bookkeeping).
_READ = {"prompt", "uc", "seed", "steps", "scale", "width", "height", "sampler",
         "noise_schedule", "n_samples", "request_type", "signed_hash", "version", "v4_prompt",
         "v4_negative_prompt"}


def is_novelai(chunks: dict[str, str]) -> bool:
    return CHUNK in chunks and (chunks.get("Software", "").startswith("NovelAI")
                                or chunks.get("Source", "").startswith("NovelAI"))


def read_novelai(chunks: dict[str, str]) -> Reading:
    data = load_json_object(chunks[CHUNK], WHERE)
    r = Reading("novelai", WHERE, extra={"App": "NovelAI"})
    prompt = data.get("prompt", chunks.get("Description"))
    names = {"uc": "negative_prompt", "seed": "seed", "steps": "steps", "scale": "cfg",
             "width": "width", "height": "height"}
    r.values.update({ours: data[theirs] for theirs, ours in names.items() if theirs in data})
    if prompt is not None:
        r.values["prompt"] = prompt
    if isinstance(data.get("sampler"), str):
        schedule = data.get("noise_schedule")
        r.values["sampler"], found = from_k_diffusion(
            data["sampler"], schedule if isinstance(schedule, str) else None)
        if found is not None:
            r.values["schedule"] = found
    source = chunks.get("Source", "").strip()
    match = _SOURCE.match(source)
    if source:
        r.values["model"] = match.group(1) if match else source
    if match:  # NovelAI's own hash of its model, not A1111's: kept as written
        r.extra["Source"] = source
    unset = set() if is_set(data.get("controlnet_model")) else {"controlnet_strength"}
    r.extra.update({k: as_text(v) for k, v in data.items()
                    if k not in _READ and k not in unset and is_set(v)})
    return r
