"""Built-in SDXL models: ``builtin:tiny-sdxl`` (toy size, for tests) and ``builtin:sdxl`` (the
full SDXL base architecture, for GPU benchmarks), random weights, built offline.

tiny-sdxl keeps SDXL's real layout (three UNet levels of two layers, no attention in the first,
a text-and-time embedding, two text encoders of which the second is OpenCLIP-shaped with at
least ten layers), only narrower, so it converts to an original single file and back
(:mod:`sdfarm.worker.original_layout`) and diffusers recognises that file as SDXL base.
Both tokenizers are the real CLIP one (:mod:`sdfarm.worker.clip_vocab`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sdfarm.worker.builtin import seeded
from sdfarm.worker.clip_vocab import MAX_TOKENS, VOCAB_SIZE

#: CLIP's start and end tokens in the real vocabulary (the end token also pads encoder 1).
BOS, EOS = VOCAB_SIZE - 2, VOCAB_SIZE - 1

#: SDXL's scheduler (stabilityai/stable-diffusion-xl-base-1.0, scheduler_config.json).
SDXL_SCHEDULER: dict[str, Any] = {
    "_class_name": "EulerDiscreteScheduler",
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "prediction_type": "epsilon",
    "interpolation_type": "linear",
    "timestep_spacing": "leading",
    "steps_offset": 1,
    "use_karras_sigmas": False,
    "sample_max_value": 1.0,
    "clip_sample": False,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "trained_betas": None,
}

#: What a v-prediction SDXL (NoobAI-XL v-pred and the like) changes in that scheduler: such
#: models are trained with zero terminal SNR.
SDXL_V_SCHEDULER: dict[str, Any] = {
    "prediction_type": "v_prediction",
    "rescale_betas_zero_snr": True,
    "timestep_spacing": "trailing",
}


@dataclass(frozen=True)
class SdxlConfigs:
    """The component configs of an SDXL model (``from_config`` / ``CLIPTextConfig`` kwargs)."""

    unet: dict[str, Any]
    vae: dict[str, Any]
    text_encoder: dict[str, Any]
    text_encoder_2: dict[str, Any]
    scheduler: dict[str, Any]
    #: float16 keeps sdxl at ~7 GB on disk; tiny-sdxl stays float32 so CPU tests need no casts.
    save_dtype: str


def sdxl_configs(name: str) -> SdxlConfigs:
    """The configs of ``tiny-sdxl`` or ``sdxl`` (also usable on the meta device)."""
    if name == "tiny-sdxl":
        te1, te2 = 16, 32  # narrow: CLIP's 49,408-row embeddings are most of the bytes
        return SdxlConfigs(
            unet=_unet(sample_size=8, channels=(16, 32, 64), heads=(1, 2, 4),
                       transformer_layers=(1, 1, 2), cross_attention_dim=te1 + te2,
                       time_embed_dim=8, pooled=te2, groups=8),
            vae=_vae((8, 16, 16, 16), layers=1, groups=4, sample_size=64),
            text_encoder=clip_config(te1, intermediate=4 * te1, layers=5, heads=2,
                                     act="quick_gelu", projection=te1),
            # >= 10 layers: diffusers tells SDXL base by its second encoder's 10th block.
            text_encoder_2=clip_config(te2, intermediate=4 * te2, layers=10, heads=2,
                                       act="gelu", projection=te2),
            scheduler=dict(SDXL_SCHEDULER),
            save_dtype="float32",
        )
    if name == "sdxl":
        return SdxlConfigs(
            unet=_unet(sample_size=128, channels=(320, 640, 1280), heads=(5, 10, 20),
                       transformer_layers=(1, 2, 10), cross_attention_dim=768 + 1280,
                       time_embed_dim=256, pooled=1280, groups=32),
            vae=_vae((128, 256, 512, 512), layers=2, groups=32, sample_size=1024),
            # CLIP ViT-L/14 and OpenCLIP ViT-bigG/14.
            text_encoder=clip_config(768, intermediate=3072, layers=12, heads=12,
                                     act="quick_gelu", projection=768),
            text_encoder_2=clip_config(1280, intermediate=5120, layers=32, heads=20,
                                       act="gelu", projection=1280),
            scheduler=dict(SDXL_SCHEDULER),
            save_dtype="float16",
        )
    raise ValueError(f"not an SDXL built-in model: {name!r}")


def _unet(*, sample_size: int, channels: tuple[int, ...], heads: tuple[int, ...],
          transformer_layers: tuple[int, ...], cross_attention_dim: int, time_embed_dim: int,
          pooled: int, groups: int) -> dict[str, Any]:
    """SDXL's UNet layout: no attention at the first level, linear projections, and the
    pooled text embedding plus six size/crop numbers added to the time embedding."""
    return {
        "sample_size": sample_size,
        "in_channels": 4,
        "out_channels": 4,
        "block_out_channels": list(channels),
        "layers_per_block": 2,
        "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
        "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
        # diffusers' name for the number of heads per level, as in SDXL's own config.
        "attention_head_dim": list(heads),
        "transformer_layers_per_block": list(transformer_layers),
        "use_linear_projection": True,
        "cross_attention_dim": cross_attention_dim,
        "addition_embed_type": "text_time",
        "addition_embed_type_num_heads": 64,
        "addition_time_embed_dim": time_embed_dim,
        # Six time ids (original size, crop corner, target size), each embedded, plus the
        # second encoder's pooled projection.
        "projection_class_embeddings_input_dim": 6 * time_embed_dim + pooled,
        "norm_num_groups": groups,
    }


def _vae(channels: tuple[int, ...], *, layers: int, groups: int,
         sample_size: int) -> dict[str, Any]:
    n = len(channels)
    return {
        "in_channels": 3,
        "out_channels": 3,
        "latent_channels": 4,
        "block_out_channels": list(channels),
        "down_block_types": ["DownEncoderBlock2D"] * n,
        "up_block_types": ["UpDecoderBlock2D"] * n,
        "layers_per_block": layers,
        "norm_num_groups": groups,
        "sample_size": sample_size,
        "scaling_factor": 0.13025,
        # SDXL's VAE overflows in float16: the pipeline decodes in float32.
        "force_upcast": True,
    }


def clip_config(hidden: int, *, intermediate: int, layers: int, heads: int, act: str,
                projection: int) -> dict[str, Any]:
    """A ``CLIPTextConfig``'s kwargs for the real CLIP vocabulary."""
    return {
        "vocab_size": VOCAB_SIZE,
        "hidden_size": hidden,
        "intermediate_size": intermediate,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "max_position_embeddings": MAX_TOKENS,
        "hidden_act": act,
        "projection_dim": projection,
        "bos_token_id": BOS,
        "eos_token_id": EOS,
        "pad_token_id": EOS,
    }


def build(name: str, folder: Path) -> None:
    """Build built-in model ``name`` (``tiny-sdxl`` or ``sdxl``) into ``folder``."""
    import torch
    from diffusers import (
        AutoencoderKL,
        EulerDiscreteScheduler,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from sdfarm.worker.clip_vocab import clip_tokenizer, write_tokenizer_files

    configs = sdxl_configs(name)
    seeded("unet")
    unet = UNet2DConditionModel(**configs.unet)
    seeded("vae")
    vae = AutoencoderKL(**configs.vae)
    seeded("text_encoder")
    text_encoder = CLIPTextModel(CLIPTextConfig(**configs.text_encoder))
    seeded("text_encoder_2")
    text_encoder_2 = CLIPTextModelWithProjection(CLIPTextConfig(**configs.text_encoder_2))
    pipe = StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=clip_tokenizer(),
        tokenizer_2=clip_tokenizer("!"),  # SDXL pads its second encoder's prompts with "!"
        unet=unet,
        scheduler=EulerDiscreteScheduler.from_config(configs.scheduler),
        add_watermarker=False,
    )
    pipe.to(dtype=getattr(torch, configs.save_dtype))
    pipe.save_pretrained(folder, safe_serialization=True)
    write_tokenizer_files(folder / "tokenizer")
    write_tokenizer_files(folder / "tokenizer_2", "!")
