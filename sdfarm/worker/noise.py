"""The noise of a pass: its initial latents, drawn per image as the pipeline would draw them
and bent by a variation seed, and the generators of its step noise (ENSD).

Per image, on the CPU: a seed gives the same noise on any device and in any batch position.
"""

from __future__ import annotations

from collections.abc import Sequence

from sdfarm.spec import RenderSpec


def latent_dtype(pipe):
    """The dtype the pipeline draws its latents in: its prompt embeddings' (text encoder's)."""
    encoder = getattr(pipe, "text_encoder", None)
    if encoder is not None:
        return encoder.dtype
    denoiser = pipe.unet if getattr(pipe, "unet", None) is not None else pipe.transformer
    return denoiser.dtype


def initial_noise(pipe, specs: Sequence[RenderSpec], generators: list):
    """The initial latents of one pass, before the scheduler's ``init_noise_sigma`` (the
    pipeline multiplies by it), on the CPU.

    For an image without a variation seed this is exactly what the pipeline draws itself
    (``diffusers.utils.torch_utils.randn_tensor`` with the per-image CPU generators, in the
    pipeline's shape and dtype), and it advances each generator exactly as the pipeline would,
    so the step noise that follows is today's too. An image with ``subseed_strength`` above 0
    gets :func:`slerp` of its seed's noise and its variation seed's (drawn the same way from a
    CPU generator of its own), per image, so neighbours in a pass do not matter.
    """
    import torch
    from diffusers.utils.torch_utils import randn_tensor

    first = specs[0]
    scale = pipe.vae_scale_factor
    denoiser = pipe.unet if getattr(pipe, "unet", None) is not None else pipe.transformer
    channels, height, width = (denoiser.config.in_channels, int(first.height) // scale,
                               int(first.width) // scale)
    packed = first.family.startswith("flux")
    if packed:
        # Flux draws 2x2 patches of a quarter of its input channels, then packs them into a
        # sequence (FluxPipeline.prepare_latents).
        channels, height, width = channels // 4, 2 * (height // 2), 2 * (width // 2)
    shape = (len(specs), channels, height, width)
    dtype = latent_dtype(pipe)
    noise = randn_tensor(shape, generator=generators, device=torch.device("cpu"), dtype=dtype)
    for i, spec in enumerate(specs):
        if spec.subseed_strength > 0:
            sub = torch.Generator("cpu").manual_seed(spec.subseed)
            subnoise = torch.randn((1, *shape[1:]), generator=sub, device="cpu", dtype=dtype)[0]
            noise[i] = slerp(spec.subseed_strength, noise[i], subnoise)
    if packed:
        noise = pipe._pack_latents(noise, *shape)
    return noise


def step_noise_generators(specs: Sequence[RenderSpec], generators: list) -> list:
    """The generators of the step noise (what stochastic samplers draw after the initial
    latents): the seed's own, already past the initial noise, as always; with ENSD, A1111's
    eta noise seed delta, a fresh CPU generator seeded with ``seed + ENSD`` instead. Samplers
    that draw no step noise never touch them, so ENSD changes nothing there."""
    import torch

    return [torch.Generator("cpu").manual_seed(s.seed + s.ensd) if s.ensd else g
            for s, g in zip(specs, generators, strict=True)]


#: Above this cosine of the angle between the two noises, slerp falls back to linear
#: interpolation (sin of a tiny angle divides badly): A1111's threshold.
SLERP_PARALLEL = 0.9995


def slerp(t: float, low, high):
    """Spherical interpolation of two noise tensors by ``t`` in [0, 1], over the whole tensor:

        omega = acos(<low/|low|, high/|high|>)
        slerp = sin((1 - t) * omega) / sin(omega) * low + sin(t * omega) / sin(omega) * high

    computed in float32 and returned in ``low``'s dtype; near-parallel noises (cosine above
    :data:`SLERP_PARALLEL`) interpolate linearly, ``(1 - t) * low + t * high``. ``t`` = 0 is
    ``low`` and 1 is ``high``, exactly (returned as they are, not computed).

    This is A1111's ``slerp(val, low, high)`` (modules/rng.py, formerly processing.py) with two
    differences: A1111 normalizes along dim 1 of the (C, H, W) noise (one angle per channel
    and column) where this takes one angle for the whole tensor, and A1111's linear fallback
    has the weights swapped (``low * val + high * (1 - val)``). A variation therefore looks
    the same in kind as A1111's but is not bit-identical to it (nor is A1111's GPU noise).
    """
    import torch

    if t <= 0:
        return low
    if t >= 1:
        return high
    lo, hi = low.to(torch.float32), high.to(torch.float32)
    dot = torch.sum((lo / lo.norm()) * (hi / hi.norm())).clamp(-1.0, 1.0)
    if dot > SLERP_PARALLEL:
        mixed = (1.0 - t) * lo + t * hi
    else:
        omega = torch.acos(dot)
        so = torch.sin(omega)
        mixed = (torch.sin((1.0 - t) * omega) / so) * lo + (torch.sin(t * omega) / so) * hi
    return mixed.to(low.dtype)
