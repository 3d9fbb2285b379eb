"""InvokeAI's ``invokeai_metadata`` chunk (InvokeAI 3 and later): one JSON object of the
settings of the image. Pure: standard library only."""

from __future__ import annotations

from sdfarm.metadata.reading import (
    Reading,
    as_list,
    as_text,
    checkpoint_name,
    is_set,
    load_json_object,
    lora_list,
)
from sdfarm.metadata.samplernames import from_invokeai

CHUNK = "invokeai_metadata"
WHERE = f"'{CHUNK}' chunk"
#: Its keys that are columns here (read below), or that say nothing about the pixels.
_READ = {"positive_prompt", "negative_prompt", "seed", "steps", "cfg_scale", "width", "height",
         "scheduler", "clip_skip", "model", "loras", "app_version", "generation_mode"}
_TXT2IMG = {"txt2img", "sdxl_txt2img", "flux_txt2img", "sd3_txt2img"}


def read_invokeai(text: str) -> Reading:
    data = load_json_object(text, WHERE)
    r = Reading("invokeai", WHERE, extra={"App": "InvokeAI"})
    names = {"positive_prompt": "prompt", "negative_prompt": "negative_prompt", "seed": "seed",
             "steps": "steps", "cfg_scale": "cfg", "width": "width", "height": "height"}
    r.values.update({ours: data[theirs] for theirs, ours in names.items() if theirs in data})
    if isinstance(data.get("scheduler"), str):
        r.values["sampler"], schedule = from_invokeai(data["scheduler"])
        if schedule is not None:
            r.values["schedule"] = schedule
    if isinstance(data.get("clip_skip"), int) and not isinstance(data["clip_skip"], bool):
        r.values["clip_skip"] = data["clip_skip"] + 1  # InvokeAI counts the layers skipped
    model = data.get("model")
    if isinstance(model, dict):  # 4+: name; 3: model_name
        name = model.get("name", model.get("model_name"))
        if isinstance(name, str):
            r.values["model"] = checkpoint_name(name)
        if isinstance(model.get("base", model.get("base_model")), str):
            r.extra["Model base"] = model.get("base", model.get("base_model"))
    loras = [(_lora_name(lora), lora.get("weight")) for lora in as_list(data.get("loras"))
             if isinstance(lora, dict)]
    if loras:
        r.extra["Lora"] = lora_list(loras)
    if isinstance(data.get("app_version"), str):
        r.extra["Version"] = data["app_version"]
    if data.get("generation_mode") not in (None, *_TXT2IMG):
        r.extra["Generation mode"] = as_text(data["generation_mode"])
    r.extra.update({k: as_text(v) for k, v in data.items() if k not in _READ and is_set(v)})
    return r


def _lora_name(lora: dict) -> object:
    model = lora.get("model") or lora.get("lora") or {}  # 4+: model; 3: lora
    return model.get("name", model.get("model_name")) if isinstance(model, dict) else None
