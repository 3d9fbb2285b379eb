"""Renderers: the seam between the queue and the pixels.

``DiffusersRenderer`` is the real thing. ``FakeRenderer`` writes a seed-determined image at a
fixed cost; it exists so that queue and reliability tests and the farm benchmark measure the
queue, not the model (``SDFARM_RENDERER=fake:SECONDS``).
"""

from __future__ import annotations

import os
import random
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Sequence
from typing import Protocol

from PIL import Image

from sdfarm.config import Settings
from sdfarm.errors import ImageFailed, SdfarmError
from sdfarm.scheduler.extranets import strip_extra_networks
from sdfarm.spec import RenderSpec
from sdfarm.worker.embeddings import EmbeddingSet
from sdfarm.worker.hires import FirstPasses, is_two_pass, render_two_pass
from sdfarm.worker.noise import initial_noise, step_noise_generators
from sdfarm.worker.prompt_encoder import ENCODED_FAMILIES, encode_prompts, split_by_chunk_count
from sdfarm.worker.vae import VaeSwitch

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
        #: How many times each model was loaded (a model evicted and needed again loads again).
        self.loads: Counter[str] = Counter()
        from sdfarm.worker.loras import LoraSlots  # issue 11: LoRA

        self.loras = LoraSlots(settings.lora_folder, settings.model_dir / "hashes.json")
        # issue 11: each pass's VAE and embeddings, swapped in without reloading the model.
        self.vaes = VaeSwitch(settings.model_dir)
        self.embeddings = EmbeddingSet(settings.embedding_folder, settings.model_dir)
        #: issue 11: the first passes of hires fixes, shared by cells that differ only in
        #: their hires settings, and each pipeline's img2img twin.
        self.first_passes = FirstPasses()

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

    def pipeline(self, model: str, model_config: str | None, allow_pickle: bool,
                 family: str = "sd1", prediction: str = "epsilon"):
        """The loaded pipeline and its original scheduler config."""
        key = (model, model_config, allow_pickle, family, prediction)
        if key in self._pipelines:
            self._pipelines.move_to_end(key)
            return self._pipelines[key]
        from sdfarm.worker.models import load_pipeline

        while len(self._pipelines) >= max(1, self.settings.pipeline_cache_size):
            _, (evicted, _config) = self._pipelines.popitem(last=False)
            self._sampler_of.pop(id(evicted), None)
            self.loras.forget(evicted)
            self.vaes.forget(evicted)
            self.embeddings.forget(evicted)
            del evicted
            self._free_memory()
        loading = time.perf_counter()
        pipe = load_pipeline(self._model_ref(model, model_config, allow_pickle),
                             self.settings.model_dir, device=self._device, dtype=self._dtype,
                             family=family, prediction=prediction,
                             cpu_offload=self.settings.cpu_offload)
        self.load_seconds += time.perf_counter() - loading
        self.loads[model] += 1
        entry = (pipe, scheduler_config_for(pipe.scheduler.config, family, prediction))
        self._pipelines[key] = entry
        return entry

    def _free_memory(self) -> None:
        import gc

        import torch

        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def render(self, specs: Sequence[RenderSpec], *, model_config: str | None,
               allow_pickle: bool, on_step: StepHook) -> list[Image.Image | ImageFailed]:
        first = specs[0]
        pipe, _ = self.pipeline(first.model, model_config, allow_pickle, first.family,
                                first.prediction)
        split = split_by_chunk_count(pipe, specs, on_step)
        if split is not None:  # prompts of different lengths: one pass per chunk count
            return split(lambda part, hook: self.render(part, model_config=model_config,
                                                        allow_pickle=allow_pickle, on_step=hook))
        if is_two_pass(first):  # issue 11: hires fix, img2img
            return render_two_pass(self, specs, model_config=model_config,
                                   allow_pickle=allow_pickle, on_step=on_step)
        pipe, arguments = self.pass_arguments(specs, model_config=model_config,
                                              allow_pickle=allow_pickle, on_step=on_step)
        return to_images(pipe(**arguments, output_type="np").images)

    def pass_arguments(self, specs: Sequence[RenderSpec], *, model_config: str | None,
                       allow_pickle: bool, on_step: StepHook) -> tuple[object, dict[str, object]]:
        """The pipeline of one text-to-image pass, set up for it (scheduler, eta), and the
        arguments of its call but ``output_type``: the text, the initial noise, the step
        noise's generators, the step hook."""
        import torch

        from sdfarm.samplers import SAMPLERS, split_sampler
        from sdfarm.worker.schedulers import make_scheduler

        first = specs[0]
        pipe, base_config = self.pipeline(first.model, model_config, allow_pickle, first.family,
                                          first.prediction)
        self.load_seconds += self.loras.apply(pipe, first)  # issue 11: the pass's LoRA set
        loading = time.perf_counter()  # a VAE or embedding load is load time, too
        self.vaes.use(pipe, first.vae, first.vae_hash)
        specs = self.embeddings.use(pipe, specs)
        self.load_seconds += time.perf_counter() - loading
        flow = first.prediction == "flow"
        sampling = (first.sampler, first.schedule, first.shift)
        if self._sampler_of.get(id(pipe)) != sampling:
            pipe.scheduler = (flow_scheduler(base_config, first.shift) if flow
                              else make_scheduler(first.sampler, base_config, first.schedule))
            self._sampler_of[id(pipe)] = sampling
        extra: dict[str, object] = {}
        if not flow:
            # Eta reaches DDIM's step through the pipeline, an ancestral step through the
            # scheduler (sdfarm.worker.schedulers); elsewhere it changes nothing (planning
            # refuses it on samplers whose noise diffusers fixes).
            eta_use = SAMPLERS[split_sampler(first.sampler)[0]].eta  # a hand-built spec may combine
            if first.eta is not None and eta_use == "ddim":
                extra["eta"] = first.eta
            if eta_use == "ancestral":
                pipe.scheduler.ancestral_eta = first.eta
        # One CPU generator per image: a seed gives the same noise on any device and in any
        # batch position (one generator for a batch would tie images to their neighbours).
        generators = [torch.Generator("cpu").manual_seed(s.seed) for s in specs]
        # The initial noise is drawn here, as the pipeline would draw it, so that a variation
        # seed can bend it; the generators then go on to the pipeline for the step noise.
        latents = initial_noise(pipe, specs, generators)
        step_generators = step_noise_generators(specs, generators)
        if hasattr(pipe.scheduler, "noise_sampler_seed"):
            # DPM++ SDE draws its step noise from Brownian trees, not from the generators: one
            # tree per image, seeded like the image's other step noise. Left unset, diffusers
            # seeds one tree from torch's global generator, and the pixels then depend on
            # whatever the process did before rather than on the job.
            pipe.scheduler.noise_sampler_seed = [s.seed + s.ensd for s in specs]

        def step_end(_pipe, _step, _timestep, tensors):
            on_step()
            return tensors

        prompts = [strip_extra_networks(s.prompt) for s in specs]
        negatives = [strip_extra_networks(s.negative_prompt) for s in specs]
        text: dict[str, object] = {"prompt": prompts, "negative_prompt": negatives}
        if first.family == "flux-dev" or first.family == "flux-schnell":
            # Flux is guidance-distilled: cfg is real CFG (true_cfg_scale), on above 1 only,
            # and with it the negative prompt; guidance feeds the model's guidance input.
            extra["true_cfg_scale"] = first.cfg
            if first.cfg <= 1:
                text = {"prompt": prompts}
            if first.family == "flux-dev":
                extra["guidance_scale"] = first.guidance if first.guidance is not None else 3.5
        else:
            extra["guidance_scale"] = first.cfg
        if first.family in ENCODED_FAMILIES:  # A1111 prompt syntax, long prompts, clip skip
            text = encode_prompts(pipe, first.family, [s.prompt for s in specs],
                                  [s.negative_prompt for s in specs], first.clip_skip)
        return pipe, dict(
            **text,
            num_inference_steps=first.steps,
            width=first.width,
            height=first.height,
            latents=latents,
            generator=step_generators,
            callback_on_step_end=step_end,
            **extra,
        )


def to_images(array) -> list[Image.Image | ImageFailed]:
    """The pipeline's float images (N, H, W, 3 in [0, 1]) as 8-bit PIL images, as diffusers
    converts them; an image that is all NaN (an fp16 overflow, typically in SDXL's VAE) is an
    :class:`ImageFailed` instead of a black PNG."""
    import numpy as np

    out: list[Image.Image | ImageFailed] = []
    for image in array:
        if np.isnan(image).all():
            out.append(ImageFailed("the image came out all NaN (a float16 overflow: set "
                                   "SDFARM_DTYPE=float32 or bfloat16, or use a VAE fixed for "
                                   "float16)"))
            continue
        pixels = (np.nan_to_num(image) * 255).round().clip(0, 255).astype("uint8")
        out.append(Image.fromarray(pixels))
    return out


def scheduler_config_for(config, family: str, prediction: str):
    """The model's scheduler config, set to the prediction type the planner detected or the
    job file set (a v-prediction SDXL such as NoobAI-XL ships an epsilon config, or none)."""
    if prediction == "flow":
        return config
    wanted = "v_prediction" if prediction == "v" else "epsilon"
    if config.get("prediction_type", "epsilon") == wanted:
        return config
    changes: dict[str, object] = {"prediction_type": wanted}
    if prediction == "v" and family == "sdxl":
        # v-prediction SDXL models are trained with zero terminal SNR (NoobAI's "ztsnr").
        changes.update(rescale_betas_zero_snr=True, timestep_spacing="trailing")
    return {**dict(config), **changes}


def flow_scheduler(base_config, shift: float | None):
    """The flow-matching Euler scheduler of a Flux or SD3 model, with ``shift`` fixed when
    given (it replaces Flux's shift by image size)."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    options = {} if shift is None else {"shift": shift, "use_dynamic_shifting": False}
    return FlowMatchEulerDiscreteScheduler.from_config(base_config, **options)


#: Test-only hook, read by :func:`make_renderer` for the fake renderer only: a fake render
#: whose prompt contains this text makes its whole process exit, as a segfault or an OOM
#: kill would, so the farm tests can show a poison job failing after ``max_attempts``.
CRASH_ON_PROMPT_ENV = "SDFARM_TEST_CRASH_ON_PROMPT"
#: Seconds the fake renderer spends before the first step of its first pass, as a model load
#: would (a large value: a device that hangs while loading).
LOAD_SECONDS_ENV = "SDFARM_TEST_LOAD_SECONDS"


class FakeRenderer:
    """A seed-determined noise image per spec, costing ``seconds`` per image, spread over the
    steps so that cancellation and heartbeats behave as with a real model."""

    def __init__(self, seconds: float, crash_on_prompt: str | None = None,
                 load_delay: float = 0.0) -> None:
        self.seconds = seconds
        self.crash_on_prompt = crash_on_prompt
        self.load_delay = load_delay
        #: As the diffusers renderer's: seconds spent loading, left out of the render time.
        self.load_seconds = 0.0
        self._loaded = False
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
        if not self._loaded:
            time.sleep(self.load_delay)  # no step hook runs meanwhile, as in a model load
            self.load_seconds += self.load_delay
            self._loaded = True
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
                                crash_on_prompt=os.environ.get(CRASH_ON_PROMPT_ENV) or None,
                                load_delay=float(os.environ.get(LOAD_SECONDS_ENV) or 0))
        except ValueError:
            pass
    raise SdfarmError(f"SDFARM_RENDERER={settings.renderer}: allowed are 'diffusers' and 'fake:SECONDS'")
