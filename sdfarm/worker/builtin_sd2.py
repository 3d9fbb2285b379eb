"""``builtin:tiny-sd2v``: SD 2.x's v-prediction architecture at toy size, random weights.

What makes a model SD 2.x rather than SD 1.x is kept, at a size a CPU renders in a fraction
of a second: linear projections in the UNet's transformers, a head count per block (SD 2's
``attention_head_dim`` list), a text encoder with GELU (OpenCLIP) rather than quick-GELU, the
real CLIP tokenizer padding with ``!`` as SD 2's does, and SD 2.1-768's v-prediction DDIM
scheduler config.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sdfarm.worker.builtin import SD15_SCHEDULER, _text_encoder, _vae, seeded
from sdfarm.worker.clip_vocab import (
    VOCAB_SIZE,
    clip_tokenizer,
    special_ids,
    write_tokenizer_files,
)

#: stabilityai/stable-diffusion-2-1 (768-v), scheduler/scheduler_config.json.
SD21_V_SCHEDULER: dict[str, Any] = {**SD15_SCHEDULER, "prediction_type": "v_prediction"}

#: SD 2's text encoder pads with "!" (OpenCLIP's pad token), not with <|endoftext|>.
PAD_TOKEN = "!"

#: Width of the text encoder: narrow, because the real vocabulary's 49,408 embedding rows are
#: most of the model's bytes (3 MB at 16 wide).
TEXT_WIDTH = 16


def unet_config() -> dict[str, Any]:
    # Two levels (one downsampling) with sample_size 8 and the x8 VAE: 64x64 images by default.
    channels = (32, 64)
    return {
        "sample_size": 8,
        "in_channels": 4,
        "out_channels": 4,
        "block_out_channels": channels,
        "layers_per_block": 1,
        "down_block_types": ("CrossAttnDownBlock2D", "DownBlock2D"),
        "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D"),
        "cross_attention_dim": TEXT_WIDTH,
        # As SD 2's [5, 10, 20, 20]: diffusers reads it as the number of heads of each block,
        # growing with the block's width so that each head stays 16 wide.
        "attention_head_dim": (2, 4),
        "use_linear_projection": True,
        "upcast_attention": True,  # SD 2.1 upcasts attention (float16 overflowed without it)
        "norm_num_groups": 8,
    }


def text_encoder_config() -> dict[str, Any]:
    return {**_text_encoder(VOCAB_SIZE, hidden=TEXT_WIDTH, intermediate=4 * TEXT_WIDTH,
                            layers=5,  # CLIP skip 1..4 each drop a real layer
                            heads=2, **special_ids(PAD_TOKEN)),
            "hidden_act": "gelu"}


def build(name: str, folder: Path) -> None:
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel

    seeded("unet")
    unet = UNet2DConditionModel(**unet_config())
    seeded("vae")
    vae = AutoencoderKL(**_vae((8, 16, 16, 16), layers=1, groups=4, sample_size=64))
    seeded("text_encoder")
    text_encoder = CLIPTextModel(CLIPTextConfig(**text_encoder_config()))
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=clip_tokenizer(PAD_TOKEN),
        unet=unet,
        # from_config keeps clip_sample and set_alpha_to_one in the saved config, as SD 2.1's.
        scheduler=DDIMScheduler.from_config(SD21_V_SCHEDULER),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(folder, safe_serialization=True)
    write_tokenizer_files(folder / "tokenizer", PAD_TOKEN)
