"""ComfyUI's ``prompt`` chunk: the graph it ran (API format), read back into one job.

The settings are where the graph puts them: the sampler node (KSampler, KSamplerAdvanced,
SamplerCustom, SamplerCustomAdvanced) holds seed, steps, cfg, sampler and scheduler, or links
to the nodes that do (KSamplerSelect, BasicScheduler, RandomNoise, CFGGuider, a seed node);
its ``positive`` and ``negative`` inputs lead, through pass-through nodes (ControlNet, area,
FluxGuidance, combine), to the text encoders; ``model`` leads through LoRA loaders to the
checkpoint; ``latent_image`` to the empty latent that gives the size. A graph with several
samplers (a hires pass, a refiner) is read from the one that starts from an empty latent; the
others are kept as extras. The ``workflow`` chunk (the editor's layout) is not needed.
Pure: standard library only.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from sdfarm.metadata.reading import (
    Reading,
    as_text,
    checkpoint_name,
    load_json_object,
    lora_list,
)
from sdfarm.metadata.samplernames import from_k_diffusion

WHERE = "ComfyUI 'prompt' graph"
SAMPLER_NODES = ("KSampler", "KSamplerAdvanced", "SamplerCustom", "SamplerCustomAdvanced")
#: Inputs of a text encoder that hold its prompt, the main one first (SDXL's text_g, Flux's
#: t5xxl).
TEXT_INPUTS = ("text", "text_g", "t5xxl", "clip_l", "text_l")
#: How far a chain of links is followed: real graphs are a few nodes deep; a loop ends here.
MAX_DEPTH = 64
#: Inputs that give a latent's size (the Efficiency pack's loader makes its own latent).
_SIZE_INPUTS = (("width", "height"), ("empty_latent_width", "empty_latent_height"))
#: Longer combined prompts are refused: combine nodes can double a text at every level.
MAX_PROMPT = 1 << 20
#: Custom sigma nodes without a ``scheduler`` input, by the schedule they compute.
_SIGMA_NODES = {"KarrasScheduler": "karras", "ExponentialScheduler": "exponential",
                "PolyexponentialScheduler": "polyexponential", "BetaSamplingScheduler": "beta",
                "AlignYourStepsScheduler": "Align Your Steps"}

Graph = dict[str, dict]


def read_comfyui(prompt_text: str) -> Reading:
    graph = _graph(prompt_text)
    samplers = sorted((i for i, n in graph.items() if _is_sampler(n)), key=_node_order)
    reading = Reading("comfyui", WHERE, extra={"App": "ComfyUI"})
    if not samplers:
        raise reading.problem(f"no sampler node ({', '.join(SAMPLER_NODES)})")
    first = next((i for i in samplers if _from_empty_latent(graph, i)), samplers[0])
    _Walk(graph, reading).sampler(first)
    for other in samplers:
        if other != first:  # a second pass sdfarm cannot render: kept, so a rerun says so
            node = graph[other]
            reading.extra[f"ComfyUI {node['class_type']} {other}"] = json.dumps(
                _scalars(node), ensure_ascii=False, sort_keys=True)
    return reading


def _is_sampler(node: dict) -> bool:
    """One of ComfyUI's sampler nodes, or a custom node with a KSampler's inputs (the
    Efficiency and Impact packs' KSamplers)."""
    inputs = node["inputs"]
    return node["class_type"] in SAMPLER_NODES or (
        {"sampler_name", "scheduler", "steps", "cfg"} <= inputs.keys()
        and ("seed" in inputs or "noise_seed" in inputs))


def _graph(text: str) -> Graph:
    data = load_json_object(text, WHERE)
    graph = {str(k): v for k, v in data.items()
             if isinstance(v, dict) and isinstance(v.get("class_type"), str)
             and isinstance(v.get("inputs", {}), dict)}
    if not graph:
        raise Reading("comfyui", WHERE).problem("no nodes")
    for node in graph.values():
        node.setdefault("inputs", {})
    return graph


def _node_order(node_id: str) -> tuple[int, str]:
    return (int(node_id), "") if node_id.isdigit() else (1 << 62, node_id)


def _link(value: object) -> str | None:
    """The node a ``[node_id, output]`` input comes from."""
    if (isinstance(value, list) and len(value) == 2 and isinstance(value[0], (str, int))
            and isinstance(value[1], int) and not isinstance(value[0], bool)):
        return str(value[0])
    return None


def _scalars(node: dict) -> dict[str, object]:
    return {k: v for k, v in node["inputs"].items() if _link(v) is None}


def _from_empty_latent(graph: Graph, sampler: str) -> bool:
    found = _follow(graph, graph[sampler]["inputs"].get("latent_image"), ("samples",),
                    lambda n: n["class_type"].startswith("Empty"))
    return found is not None


def _follow(graph: Graph, value: object, through: tuple[str, ...],
            wanted: Callable[[dict], bool]) -> dict | None:
    """The first node, from the one ``value`` links to and on through the inputs named
    ``through``, that is ``wanted``."""
    node_id = _link(value)
    for _ in range(MAX_DEPTH):
        node = graph.get(node_id) if node_id is not None else None
        if node is None:
            return None
        if wanted(node):
            return node
        node_id = next((_link(node["inputs"][k]) for k in through
                        if _link(node["inputs"].get(k)) is not None), None)
    return None


class _Walk:
    """Reads one sampler node's settings into a Reading."""

    def __init__(self, graph: Graph, reading: Reading) -> None:
        self.graph = graph
        self.reading = reading
        self.values = reading.values
        self.extra = reading.extra
        #: (node, role) -> its text: shared inputs are read once, and a loop ends (as None).
        self.texts: dict[tuple[str, str], str | None] = {}

    def value(self, inputs: dict, key: str, depth: int = 0) -> object:
        """An input's value; a link is followed to a node that holds one (a primitive, a
        seed or text node): its input of the same name, its ``value``, or its only one."""
        raw = inputs.get(key)
        node_id = _link(raw)
        if node_id is None:
            return raw
        node = self.graph.get(node_id)
        if node is None or depth >= MAX_DEPTH:
            return None
        source = node["inputs"]
        for name in (key, "value", "seed", "text", "string", "int", "float", "number"):
            if name in source:
                return self.value(source, name, depth + 1)
        plain = [k for k, v in source.items() if _link(v) is None]
        return self.value(source, plain[0], depth + 1) if len(plain) == 1 else None

    def sampler(self, node_id: str) -> None:
        node = self.graph[node_id]
        inputs, kind = node["inputs"], node["class_type"]
        seed_key = "seed" if "seed" in inputs else "noise_seed"
        guider = inputs
        if kind == "SamplerCustomAdvanced":
            noise = self._linked(inputs, "noise")
            self._put("seed", self.value(noise["inputs"], "noise_seed") if noise else None)
            found = self._linked(inputs, "guider")
            guider = found["inputs"] if found else {}
            if found is not None and "cfg" not in guider:  # BasicGuider: no CFG
                self._put("cfg", 1.0)
                self.values["negative_prompt"] = ""
        else:
            self._put("seed", self.value(inputs, seed_key))
        if "cfg" in guider:
            self._put("cfg", self.value(guider, "cfg"))
        if "sampler_name" in inputs:  # KSampler, KSamplerAdvanced and their look-alikes
            self._put("steps", self.value(inputs, "steps"))
            self._sampling(self.value(inputs, "sampler_name"), self.value(inputs, "scheduler"))
            self._denoise(self.value(inputs, "denoise"))
            # KSamplerAdvanced running only part of the steps (a base/refiner split)
            start, end = self.value(inputs, "start_at_step"), self.value(inputs, "end_at_step")
            steps = self.values.get("steps")
            if isinstance(start, int) and start > 0:
                self.extra["ComfyUI start_at_step"] = as_text(start)
            if isinstance(end, int) and isinstance(steps, int) and end < steps:
                self.extra["ComfyUI end_at_step"] = as_text(end)
        else:
            self._custom_sampling(inputs)
        self._conditioning(guider)
        self._model(guider.get("model", inputs.get("model")))
        self._size(inputs.get("latent_image"))

    def _put(self, name: str, value: object) -> None:
        if value is not None:
            self.values[name] = value

    def _linked(self, inputs: dict, key: str) -> dict | None:
        node_id = _link(inputs.get(key))
        return self.graph.get(node_id) if node_id is not None else None

    def _sampling(self, sampler: object, scheduler: object) -> None:
        if isinstance(sampler, str):
            name, schedule = from_k_diffusion(
                sampler, scheduler if isinstance(scheduler, str) else None)
            self.values["sampler"] = name
            if schedule is not None:
                self.values["schedule"] = schedule

    def _custom_sampling(self, inputs: dict) -> None:
        select = self._linked(inputs, "sampler")
        sigmas = self._linked(inputs, "sigmas")
        scheduler = None
        if sigmas is not None:
            s = sigmas["inputs"]
            self._put("steps", self.value(s, "steps"))
            scheduler = self.value(s, "scheduler") if "scheduler" in s else _SIGMA_NODES.get(
                sigmas["class_type"], sigmas["class_type"])
            self._denoise(self.value(s, "denoise"))
        sampler = self.value(select["inputs"], "sampler_name") if select else None
        if sampler is None and select is not None:  # SamplerEulerAncestral and the like
            sampler = select["class_type"]
        self._sampling(sampler, scheduler)

    def _denoise(self, denoise: object) -> None:
        if isinstance(denoise, (int, float)) and denoise != 1:
            self.extra["Denoising strength"] = as_text(denoise)

    def _conditioning(self, inputs: dict) -> None:
        for role, name, key in (("positive", "prompt", "positive"),
                                ("negative", "negative_prompt", "negative"),
                                ("positive", "prompt", "conditioning")):
            if key in inputs and name not in self.values:
                text = self._text(_link(inputs[key]), role, 0)
                if text is not None:
                    self.values[name] = text

    def _text(self, node_id: str | None, role: str, depth: int) -> str | None:
        """The prompt a conditioning input was encoded from; several (a combine node) are
        joined by a line break; ``None`` when no encoder is found."""
        node = self.graph.get(node_id) if node_id is not None else None
        if node is None or depth >= MAX_DEPTH:
            return None
        key = (node_id, role)
        if key not in self.texts:
            self.texts[key] = None
            self.texts[key] = self._node_text(node, role, depth)
        return self.texts[key]

    def _node_text(self, node: dict, role: str, depth: int) -> str | None:
        inputs, kind = node["inputs"], node["class_type"]
        if kind == "ConditioningZeroOut":
            return ""
        if isinstance(inputs.get(role), str):  # a loader that encodes its own prompts
            layer = inputs.get("clip_skip")
            if role == "positive" and isinstance(layer, int) and layer < 0:
                self.values["clip_skip"] = -layer
            return self.value(inputs, role)
        for key in TEXT_INPUTS:
            if key in inputs:
                text = self.value(inputs, key)
                if isinstance(text, str):
                    if role == "positive":
                        self._clip_skip(inputs.get("clip"))
                    return text
        if kind == "FluxGuidance" and role == "positive":
            self.extra["Distilled CFG Scale"] = as_text(self.value(inputs, "guidance"))
        elif role == "positive" and _scalars(node):  # a ControlNet, an area: kept
            self.extra[f"ComfyUI {kind}"] = json.dumps(_scalars(node), ensure_ascii=False,
                                                       sort_keys=True)
        # A pass-through: the input of the same role (ControlNet nodes take both), else every
        # conditioning input (combine and concat nodes).
        keys = ([role] if _link(inputs.get(role))
                else [k for k in inputs if k.startswith("conditioning")])
        texts = (self._text(_link(inputs[k]), role, depth + 1) for k in keys)
        found = [t for t in texts if t is not None]
        # Each text once: an encoder reached along two paths is one prompt.
        text = "\n".join(dict.fromkeys(t for t in found if t))
        if len(text) > MAX_PROMPT:
            raise self.reading.problem(f"{role} prompt longer than {MAX_PROMPT} characters")
        return text if found else None

    def _clip_skip(self, clip: object) -> None:
        node = _follow(self.graph, clip, ("clip",), lambda n: n["class_type"] == "CLIPSetLastLayer")
        if node is not None:
            layer = self.value(node["inputs"], "stop_at_clip_layer")
            if isinstance(layer, int) and layer < 0:
                self.values["clip_skip"] = -layer

    def _model(self, model: object) -> None:
        loras: list[tuple[object, object]] = []

        def checkpoint(node: dict) -> bool:
            inputs = node["inputs"]
            if "lora_name" in inputs:
                loras.append((self.value(inputs, "lora_name"),
                              self.value(inputs, "strength_model")))
            return any(k in inputs for k in ("ckpt_name", "unet_name"))

        found = _follow(self.graph, model, ("model",), checkpoint)
        if found is not None:
            name = self.value(found["inputs"], "ckpt_name" if "ckpt_name" in found["inputs"]
                              else "unet_name")
            if isinstance(name, str):
                self.values["model"] = checkpoint_name(name)
        if loras:
            self.extra["Lora"] = lora_list(loras)

    def _size(self, latent: object) -> None:
        node = _follow(self.graph, latent, ("samples", "latent", "latent_image"),
                       lambda n: any(w in n["inputs"] for w, _ in _SIZE_INPUTS))
        if node is None:
            return
        inputs = node["inputs"]
        width, height = next((w, h) for w, h in _SIZE_INPUTS if w in inputs)
        self._put("width", self.value(inputs, width))
        self._put("height", self.value(inputs, height))
        if "samples" in inputs or "pixels" in inputs:  # upscaled from another latent
            self.extra["ComfyUI latent"] = node["class_type"]
