"""SwarmUI's metadata: JSON with its settings under ``sui_image_params``, in the PNG's
``parameters`` chunk (or a JPEG's EXIF UserComment). Sampler and scheduler carry ComfyUI's
names (SwarmUI renders through ComfyUI). Pure: standard library only."""

from __future__ import annotations

from sdfarm.metadata.reading import (
    Reading,
    as_list,
    as_text,
    checkpoint_name,
    is_set,
    lora_list,
)
from sdfarm.metadata.samplernames import read_k_diffusion

KEY = "sui_image_params"
WHERE = "SwarmUI 'sui_image_params'"
#: Keys read below, or that say nothing about the pixels.
_READ = {"prompt", "negativeprompt", "seed", "steps", "cfgscale", "width", "height", "sampler",
         "scheduler", "model", "clipstopatlayer", "loras", "loraweights", "swarm_version",
         "aspectratio", "date", "generation_time", "prep_time", "automaticvae"}


def read_swarmui(data: dict) -> Reading:
    params = data.get(KEY)
    r = Reading("swarmui", WHERE, extra={"App": "SwarmUI"})
    if not isinstance(params, dict):
        raise r.problem("not a JSON object")
    names = {"prompt": "prompt", "negativeprompt": "negative_prompt", "seed": "seed",
             "steps": "steps", "cfgscale": "cfg", "width": "width", "height": "height"}
    r.values.update({ours: params[theirs] for theirs, ours in names.items() if theirs in params})
    read_k_diffusion(params, r.values)
    if isinstance(params.get("model"), str):
        r.values["model"] = checkpoint_name(params["model"].replace("/", "\\"))
    layer = params.get("clipstopatlayer")
    if isinstance(layer, int) and not isinstance(layer, bool) and layer < 0:
        r.values["clip_skip"] = -layer
    loras, weights = as_list(params.get("loras")), as_list(params.get("loraweights"))
    if loras:
        r.extra["Lora"] = lora_list([(n, weights[i] if i < len(weights) else 1)
                                     for i, n in enumerate(loras)])
    if isinstance(params.get("swarm_version"), str):
        r.extra["Version"] = params["swarm_version"]
    r.extra.update({k: as_text(v) for k, v in params.items() if k not in _READ and is_set(v)})
    return r
