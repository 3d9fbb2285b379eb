"""Renderers: the seam between the queue and the pixels.

``DiffusersRenderer`` is the real thing. ``FakeRenderer`` writes a seed-determined image at a
fixed cost; it exists so that queue and reliability tests and the farm benchmark measure the
queue, not the model (``SDFARM_RENDERER=fake:SECONDS``).
"""

from __future__ import annotations

import os
import random
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Protocol

from PIL import Image

from sdfarm.config import Settings
from sdfarm.errors import SdfarmError
from sdfarm.spec import RenderSpec

StepHook = Callable[[], None]


class Renderer(Protocol):
    #: What is recorded on each job as its device.
    device: str
    #: CPU threads in use (recorded, since it changes the low bits of CPU renders).
    threads: int

    def render(self, specs: Sequence[RenderSpec], *, model_config: str | None,
               allow_pickle: bool, on_step: StepHook) -> list[Image.Image]:
        """One forward pass: every spec shares all but prompt and seed."""

    def model_hash(self, model: str, model_config: str | None, allow_pickle: bool) -> str | None:
        """A1111 short hash of the model's weights, once they are on this machine."""

    def set_threads(self, threads: int) -> None: ...


class DiffusersRenderer:
    """Renders with a diffusers pipeline, keeping the last few pipelines loaded (LRU)."""

    def __init__(self, settings: Settings) -> None:
        import torch

        from sdfarm.worker.device import device_label, resolve_device, resolve_dtype

        self.settings = settings
        self._device = resolve_device(settings.device)
        self._dtype = resolve_dtype(settings.dtype, self._device)
        self.device = device_label(self._device)
        self.threads = settings.threads
        torch.set_num_threads(self.threads)
        self._pipelines: OrderedDict[tuple, tuple[object, object]] = OrderedDict()
        #: The (sampler, schedule) each cached pipeline's scheduler is set up for. Schedulers
        #: reset their state in set_timesteps, so one is reused across calls instead of rebuilt
        #: (2-3 ms).
        self._sampler_of: dict[int, tuple[str, str]] = {}
        #: Seconds spent loading models so far; a pass subtracts what it spent loading, so a
        #: job's render_seconds (and the plan's estimates from it) measure rendering alone.
        self.load_seconds = 0.0

    def set_threads(self, threads: int) -> None:
        import torch

        if threads != self.threads:
            torch.set_num_threads(threads)
            self.threads = threads

    def _model_ref(self, model: str, model_config: str | None, allow_pickle: bool):
        from sdfarm.modelref import parse_model_ref

        return parse_model_ref(model, self.settings.model_dir, model_config=model_config,
                               allow_pickle=allow_pickle)

    def model_hash(self, model: str, model_config: str | None, allow_pickle: bool) -> str | None:
        from sdfarm.modelref import model_hash

        return model_hash(self._model_ref(model, model_config, allow_pickle), self.settings.model_dir)

    def pipeline(self, model: str, model_config: str | None, allow_pickle: bool):
        """The loaded pipeline and its original scheduler config."""
        key = (model, model_config, allow_pickle)
        if key in self._pipelines:
            self._pipelines.move_to_end(key)
            return self._pipelines[key]
        from sdfarm.worker.models import load_pipeline

        while len(self._pipelines) >= max(1, self.settings.pipeline_cache_size):
            _, (evicted, _config) = self._pipelines.popitem(last=False)
            self._sampler_of.pop(id(evicted), None)
            self._free_memory()
        loading = time.perf_counter()
        pipe = load_pipeline(self._model_ref(model, model_config, allow_pickle),
                             self.settings.model_dir, device=self._device, dtype=self._dtype)
        self.load_seconds += time.perf_counter() - loading
        entry = (pipe, pipe.scheduler.config)
        self._pipelines[key] = entry
        return entry

    def _free_memory(self) -> None:
        import gc

        import torch

        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def render(self, specs: Sequence[RenderSpec], *, model_config: str | None,
               allow_pickle: bool, on_step: StepHook) -> list[Image.Image]:
        import torch

        from sdfarm.samplers import SAMPLERS
        from sdfarm.worker.schedulers import make_scheduler

        first = specs[0]
        pipe, base_config = self.pipeline(first.model, model_config, allow_pickle)
        sampling = (first.sampler, first.schedule)
        if self._sampler_of.get(id(pipe)) != sampling:
            pipe.scheduler = make_scheduler(first.sampler, base_config, first.schedule)
            self._sampler_of[id(pipe)] = sampling
        # Eta reaches DDIM's step through the pipeline; elsewhere it changes nothing (planning
        # refuses it on samplers whose noise diffusers fixes).
        eta = ({"eta": first.eta} if first.eta is not None
               and SAMPLERS[first.sampler].eta == "ddim" else {})
        # One CPU generator per image: a seed gives the same noise on any device and in any
        # batch position (one generator for a batch would tie images to their neighbours).
        generators = [torch.Generator("cpu").manual_seed(s.seed) for s in specs]

        def step_end(_pipe, _step, _timestep, tensors):
            on_step()
            return tensors

        prompts = [s.prompt for s in specs]
        negatives = [s.negative_prompt for s in specs]
        text: dict[str, object] = {"prompt": prompts, "negative_prompt": negatives}
        if first.clip_skip > 1:
            # diffusers 0.42's own clip_skip path reaches for `text_encoder.text_model`, which
            # transformers 5 removed; encoding here also pins A1111's numbering explicitly.
            text = {"prompt_embeds": _clip_skip_embeddings(pipe, prompts, first.clip_skip),
                    "negative_prompt_embeds": _clip_skip_embeddings(pipe, negatives, first.clip_skip)}
        result = pipe(
            **text,
            num_inference_steps=first.steps,
            guidance_scale=first.cfg,
            width=first.width,
            height=first.height,
            generator=generators,
            callback_on_step_end=step_end,
            output_type="pil",
            **eta,
        )
        return list(result.images)


def _clip_skip_embeddings(pipe, texts: list[str], clip_skip: int):
    """Prompt embeddings from the CLIP layer A1111's CLIP skip names (2 = penultimate), with the
    final layer norm applied as A1111 and diffusers both do."""
    import torch

    tokens = pipe.tokenizer(texts, padding="max_length", max_length=pipe.tokenizer.model_max_length,
                            truncation=True, return_tensors="pt")
    encoder = pipe.text_encoder
    with torch.no_grad():
        out = encoder(tokens.input_ids.to(encoder.device), output_hidden_states=True)
        hidden = out.hidden_states[-clip_skip]
        norm = getattr(encoder, "text_model", encoder).final_layer_norm
        return norm(hidden).to(dtype=encoder.dtype)


#: Test-only hook, read by :func:`make_renderer` for the fake renderer only: a fake render
#: whose prompt contains this text makes its whole process exit, as a segfault or an OOM
#: kill would, so the farm tests can show a poison job failing after ``max_attempts``.
CRASH_ON_PROMPT_ENV = "SDFARM_TEST_CRASH_ON_PROMPT"


class FakeRenderer:
    """A seed-determined noise image per spec, costing ``seconds`` per image, spread over the
    steps so that cancellation and heartbeats behave as with a real model."""

    def __init__(self, seconds: float, crash_on_prompt: str | None = None) -> None:
        self.seconds = seconds
        self.crash_on_prompt = crash_on_prompt
        self.device = "fake"
        self.threads = 1

    def set_threads(self, threads: int) -> None:
        self.threads = threads

    def model_hash(self, model: str, model_config: str | None, allow_pickle: bool) -> str | None:
        return None

    def render(self, specs: Sequence[RenderSpec], *, model_config: str | None,
               allow_pickle: bool, on_step: StepHook) -> list[Image.Image]:
        steps = specs[0].steps
        pause = self.seconds * len(specs) / steps
        crash = self.crash_on_prompt and any(self.crash_on_prompt in s.prompt for s in specs)
        for _ in range(steps):
            if pause:
                time.sleep(pause)
            on_step()
            if crash:
                os._exit(70)  # no cleanup, no exception: the process just vanishes
        return [_noise_image(s) for s in specs]


def _noise_image(spec: RenderSpec) -> Image.Image:
    rng = random.Random(f"{spec.key}")
    return Image.frombytes("RGB", (spec.width, spec.height), rng.randbytes(spec.width * spec.height * 3))


def make_renderer(settings: Settings) -> Renderer:
    if settings.renderer == "diffusers":
        return DiffusersRenderer(settings)
    if settings.renderer.startswith("fake:"):
        try:
            return FakeRenderer(float(settings.renderer.removeprefix("fake:")),
                                crash_on_prompt=os.environ.get(CRASH_ON_PROMPT_ENV) or None)
        except ValueError:
            pass
    raise SdfarmError(f"SDFARM_RENDERER={settings.renderer}: allowed are 'diffusers' and 'fake:SECONDS'")
