"""The hires fix and img2img: renders in two passes, the second through diffusers' img2img
pipeline (``AutoPipelineForImage2Image.from_pipe``: the same weights, no second load).

Hires fix, with A1111's meanings: a text-to-image first pass at the base size, an upscale
(``Latent``: the latents interpolated bilinearly; ``Lanczos``: decoded, resized with PIL's
Lanczos, encoded again by the second pass), then an img2img second pass with the first
pass's sampler and text that runs ``hires_steps`` steps (0: ``steps``), the last ones of a
schedule of ``hires_steps / hires_denoise`` steps, as A1111 runs it.

The first pass of a hires pass is, by definition, the text-to-image pass of the same images
(in the same order) without their hires settings. So it is a function of the pass alone:
cells that differ only in hires settings (they render one after another, the hires settings
ranking last in the batch group) share it through :class:`FirstPasses`, and an exact rerun,
which rebuilds the original pass (``pass_id``), renders the very same first pass again. A
seed's low bits may depend on its neighbours in a pass on a CPU; both passes have the same
neighbours in a rerun, so nothing more needs recording.

The second pass draws its noise from a fresh CPU generator per image seeded with the image's
seed (as A1111 seeds its hires noise), so it is deterministic per image too.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING
from weakref import WeakKeyDictionary

from sdfarm.errors import SdfarmError
from sdfarm.spec import RenderSpec

if TYPE_CHECKING:
    from PIL import Image

    from sdfarm.errors import ImageFailed

#: First-pass latents kept for later cells, counted in images (an SDXL image's latents at
#: 1024 px take 256 KB; kept on the CPU).
FIRST_PASS_IMAGES = 256
#: Arguments of the text-to-image call that the img2img call does not take or sets itself.
_FIRST_PASS_ONLY = frozenset({"num_inference_steps", "width", "height", "latents", "generator"})
#: Largest schedule a second pass asks the scheduler for (its training timesteps).
MAX_SCHEDULE_STEPS = 1000

#: Each loaded pipeline's img2img twin, dropped with it.
_twins: WeakKeyDictionary = WeakKeyDictionary()


def is_two_pass(spec: RenderSpec) -> bool:
    return spec.hires_scale > 0 or bool(spec.init_image)


def first_pass_spec(spec: RenderSpec) -> RenderSpec:
    """What the first pass of a hires image renders: the image without its hires fix."""
    return spec.replace(hires_scale=0.0).normalized()


def hires_size(spec: RenderSpec, multiple: int = 8) -> tuple[int, int]:
    """The final (width, height) of a hires image: A1111's ``int(side * scale)``, down to a
    multiple of the VAE's factor (what the latents can hold), at least one multiple."""
    return tuple(max(multiple, int(side * spec.hires_scale) // multiple * multiple)  # type: ignore[return-value]
                 for side in (spec.width, spec.height))


def second_pass_steps(steps: int, denoise: float) -> tuple[int, float]:
    """(schedule length, img2img strength) that make diffusers run the hires pass A1111 runs:
    ``steps`` steps, the last ones of a schedule of ``int(steps / denoise)`` (A1111's
    ``setup_img2img_steps``). diffusers runs ``int(schedule * strength)`` steps of its
    schedule, so the strength is the fraction that gives ``steps`` (half a step above it, so
    rounding cannot lose one). ``(0, 0.0)``: nothing to denoise."""
    if denoise <= 0:
        return 0, 0.0
    schedule = max(steps, min(MAX_SCHEDULE_STEPS, int(steps / min(denoise, 0.999))))
    return schedule, min(1.0, (steps + 0.5) / schedule)


class FirstPasses:
    """The last first passes (latents), by the pass they were rendered for; counts what it
    renders, so a grid can show how many it shared."""

    def __init__(self, images: int = FIRST_PASS_IMAGES) -> None:
        self.images = images
        self._entries: OrderedDict[tuple, object] = OrderedDict()
        #: First-pass images rendered, and the forward passes that rendered them.
        self.rendered = 0
        self.passes = 0

    def get(self, key: tuple):
        latents = self._entries.get(key)
        if latents is not None:
            self._entries.move_to_end(key)
        return latents

    def put(self, key: tuple, latents) -> None:
        self.rendered += len(latents)
        self.passes += 1
        self._entries[key] = latents.detach().to("cpu", copy=True)
        held = sum(len(v) for v in self._entries.values())  # type: ignore[arg-type]
        while held > self.images and len(self._entries) > 1:
            _, dropped = self._entries.popitem(last=False)
            held -= len(dropped)  # type: ignore[arg-type]


def render_two_pass(renderer, specs: Sequence[RenderSpec], *, model_config: str | None,
                    allow_pickle: bool, on_step: Callable[[], None]
                    ) -> list[Image.Image | ImageFailed]:
    """One pass of hires or img2img images (``renderer`` is a ``DiffusersRenderer``)."""
    if specs[0].init_image:
        return _img2img(renderer, specs, model_config=model_config, allow_pickle=allow_pickle,
                        on_step=on_step)
    return _hires(renderer, specs, model_config=model_config, allow_pickle=allow_pickle,
                  on_step=on_step)


def _hires(renderer, specs: Sequence[RenderSpec], *, model_config: str | None,
           allow_pickle: bool, on_step: Callable[[], None]) -> list:
    from sdfarm.worker.render import to_images

    first = specs[0]
    bases = [first_pass_spec(s) for s in specs]
    # The text arguments (and the sampler set up) once, for both passes.
    pipe, arguments = renderer.pass_arguments(bases, model_config=model_config,
                                              allow_pickle=allow_pickle, on_step=on_step)
    key = (tuple(b.key for b in bases), model_config, allow_pickle, renderer.threads,
           renderer.device)
    cache: FirstPasses = renderer.first_passes
    latents = cache.get(key)
    if latents is None:
        latents = pipe(**arguments, output_type="latent").images
        cache.put(key, latents)
    latents = latents.to(pipe._execution_device)  # a CUDA device also under CPU offload
    width, height = hires_size(first, pipe.vae_scale_factor)
    steps, strength = second_pass_steps(first.hires_steps or first.steps, first.hires_denoise)
    runs = int(steps * strength)
    if first.hires_upscaler == "Latent":
        import torch.nn.functional as F

        factor = pipe.vae_scale_factor
        image = F.interpolate(latents, size=(height // factor, width // factor),
                              mode="bilinear", antialias=False)
        if runs < 1:
            return to_images(_decode(pipe, image, "np"))
    else:
        from PIL import Image as PILImage

        image = [im.resize((width, height), PILImage.Resampling.LANCZOS)
                 for im in _decode(pipe, latents, "pil")]
        if runs < 1:
            return to_images(_round_trip(pipe, image))
    return _second_pass(pipe, arguments, specs, image, strength, steps)


def _img2img(renderer, specs: Sequence[RenderSpec], *, model_config: str | None,
             allow_pickle: bool, on_step: Callable[[], None]) -> list:
    from sdfarm.worker.render import to_images

    first = specs[0]
    pipe, arguments = renderer.pass_arguments(specs, model_config=model_config,
                                              allow_pickle=allow_pickle, on_step=on_step)
    images = [load_init_image(s) for s in specs]
    if int(first.steps * first.denoise) < 1:  # nothing to denoise: the image through the VAE
        return to_images(_round_trip(pipe, images))
    return _second_pass(pipe, arguments, specs, images, first.denoise, first.steps)


def _second_pass(pipe, arguments: dict, specs: Sequence[RenderSpec], image, strength: float,
                 steps: int) -> list:
    import torch

    from sdfarm.worker.render import to_images

    img2img = img2img_pipeline(pipe)
    kept = {k: v for k, v in arguments.items() if k not in _FIRST_PASS_ONLY}
    generators = [torch.Generator("cpu").manual_seed(s.seed) for s in specs]
    result = img2img(**kept, image=image, strength=strength, num_inference_steps=steps,
                     generator=generators, output_type="np")
    return to_images(result.images)


def img2img_pipeline(pipe):
    """``pipe``'s img2img pipeline, sharing its weights; made once per pipeline, and given
    ``pipe``'s current components (the renderer swaps the scheduler, others may swap a VAE)."""
    twin = _twins.get(pipe)
    if twin is None:
        from diffusers import AutoPipelineForImage2Image

        twin = _twins[pipe] = AutoPipelineForImage2Image.from_pipe(pipe)
        twin.set_progress_bar_config(disable=True)
    ours = twin.components
    for name, component in pipe.components.items():
        if name in ours and ours[name] is not component:
            setattr(twin, name, component)
    return twin


def load_init_image(spec: RenderSpec):
    """The spec's init image, as planned (its sha256 must still match), in RGB at the spec's
    size (resized with Lanczos, as A1111's "Just resize")."""
    import hashlib
    import io

    from PIL import Image as PILImage

    path = Path(spec.init_image)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SdfarmError(f"init image {path} cannot be read: {exc.strerror or exc}") from None
    if spec.init_image_hash and hashlib.sha256(data).hexdigest() != spec.init_image_hash:
        raise SdfarmError(f"init image {path} changed since it was planned (sha256 "
                          f"{spec.init_image_hash[:12]}... then); put the original back, or "
                          f"plan the job file again to render the new one")
    with PILImage.open(io.BytesIO(data)) as opened:
        image = opened.convert("RGB")
    if image.size != (spec.width, spec.height):
        image = image.resize((spec.width, spec.height), PILImage.Resampling.LANCZOS)
    return image


def _decode(pipe, latents, output_type: str):
    """The pipeline's latents as images, decoded as its own call decodes them."""
    import torch

    vae = pipe.vae
    upcast = vae.dtype == torch.float16 and getattr(vae.config, "force_upcast", False)
    if upcast:
        vae.to(torch.float32)
    try:
        latents = latents.to(vae.dtype)
        mean, std = getattr(vae.config, "latents_mean", None), getattr(vae.config, "latents_std", None)
        if mean is not None and std is not None:
            shape = (1, len(mean), 1, 1)
            mean = torch.tensor(mean).view(shape).to(latents.device, latents.dtype)
            std = torch.tensor(std).view(shape).to(latents.device, latents.dtype)
            latents = latents * std / vae.config.scaling_factor + mean
        else:
            latents = latents / vae.config.scaling_factor
        with torch.no_grad():
            image = vae.decode(latents, return_dict=False)[0]
    finally:
        if upcast:
            vae.to(torch.float16)
    return pipe.image_processor.postprocess(image, output_type=output_type)


def _round_trip(pipe, images: list):
    """``images`` encoded by the VAE (the mean of its posterior: no noise) and decoded."""
    import torch

    vae = pipe.vae
    pixels = pipe.image_processor.preprocess(images).to(pipe._execution_device, vae.dtype)
    with torch.no_grad():
        latents = vae.encode(pixels).latent_dist.mode()
        image = vae.decode(latents, return_dict=False)[0]
    return pipe.image_processor.postprocess(image, output_type="np")
