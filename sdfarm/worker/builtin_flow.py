"""``builtin:tiny-flux`` and ``builtin:tiny-sd3``: the flow-matching families at toy size.

Flux.1-dev (a guidance-distilled MMDiT reading CLIP's pooled vector and T5's sequence) and
SD 3.5 medium (an MMDiT with QK norm and dual attention, reading two CLIP encoders and T5),
each from the real diffusers and transformers classes with random weights, a few MB, well under
a second per 64 px image on a CPU. Both use the real CLIP tokenizer and a T5 tokenizer
generated offline (:mod:`sdfarm.worker.t5_vocab`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sdfarm.worker.builtin import _text_encoder, seeded
from sdfarm.worker.clip_vocab import (
    VOCAB_SIZE,
    clip_tokenizer,
    special_ids,
    write_tokenizer_files,
)
from sdfarm.worker.t5_vocab import t5_tokenizer

#: black-forest-labs/FLUX.1-dev, scheduler/scheduler_config.json: the shift grows with the
#: image's token count, from base_shift at 256 tokens to max_shift at 4096.
FLUX_DEV_SCHEDULER: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "shift": 3.0,
    "use_dynamic_shifting": True,
    "base_shift": 0.5,
    "max_shift": 1.15,
    "base_image_seq_len": 256,
    "max_image_seq_len": 4096,
}

#: stabilityai/stable-diffusion-3.5-medium, scheduler/scheduler_config.json.
SD3_SCHEDULER: dict[str, Any] = {"num_train_timesteps": 1000, "shift": 3.0}

#: Each model's CLIP tokenizers and the token each pads with: OpenAI's CLIP-L pads with
#: <|endoftext|>, OpenCLIP's bigG (SD3's second encoder, as SDXL's) with "!".
CLIP_PADS: dict[str, dict[str, str]] = {
    "tiny-flux": {"tokenizer": "<|endoftext|>"},
    "tiny-sd3": {"tokenizer": "<|endoftext|>", "tokenizer_2": "!"},
}

#: Width of each CLIP encoder: narrow, because the real vocabulary's 49,408 embedding rows are
#: most of its bytes (3 MB at 16 wide).
CLIP_WIDTH = 16
#: T5's width; SD3 pads the two CLIP sequences (16 + 16 wide) to it, so it must be at least 32.
T5_WIDTH = 32


def clip_config(*, act: str, pad_token: str = "<|endoftext|>") -> dict[str, Any]:
    """A CLIP text encoder on the real vocabulary: ``quick_gelu`` for OpenAI's CLIP-L,
    ``gelu`` for OpenCLIP's bigG (SD3's second encoder)."""
    return {**_text_encoder(VOCAB_SIZE, hidden=CLIP_WIDTH, intermediate=4 * CLIP_WIDTH,
                            layers=2, heads=2, **special_ids(pad_token)),
            "hidden_act": act}


def t5_config(vocab_size: int) -> dict[str, Any]:
    """T5 v1.1's encoder (gated GELU, relative positions, no biases) at toy width."""
    return {
        "vocab_size": vocab_size,
        "d_model": T5_WIDTH,
        "d_kv": 8,
        "d_ff": 2 * T5_WIDTH,
        "num_layers": 2,
        "num_heads": 4,
        "feed_forward_proj": "gated-gelu",
        "is_encoder_decoder": False,
        "use_cache": False,
    }


def flow_vae_config(*, scaling_factor: float, shift_factor: float) -> dict[str, Any]:
    """The 16-channel VAE of Flux and SD3: four levels (x8), no quant convs, a shift."""
    channels = (8, 16, 16, 16)
    return {
        "in_channels": 3,
        "out_channels": 3,
        "latent_channels": 16,
        "block_out_channels": channels,
        "down_block_types": ("DownEncoderBlock2D",) * len(channels),
        "up_block_types": ("UpDecoderBlock2D",) * len(channels),
        "layers_per_block": 1,
        "norm_num_groups": 4,
        "sample_size": 64,
        "scaling_factor": scaling_factor,
        "shift_factor": shift_factor,
        "use_quant_conv": False,
        "use_post_quant_conv": False,
    }


def flux_transformer_config() -> dict[str, Any]:
    return {
        "patch_size": 1,
        "in_channels": 64,  # 16 latent channels packed in 2x2 patches
        "num_layers": 1,
        "num_single_layers": 2,
        "attention_head_dim": 16,
        "num_attention_heads": 2,
        "joint_attention_dim": T5_WIDTH,
        "pooled_projection_dim": CLIP_WIDTH,  # CLIP's pooled output
        "guidance_embeds": True,  # Flux.1-dev; schnell has none
        "axes_dims_rope": (4, 6, 6),  # sums to attention_head_dim
    }


def sd3_transformer_config() -> dict[str, Any]:
    return {
        # 8 latents (64 px) a side by default, in 2x2 patches; positions for up to 256 px.
        "sample_size": 8,
        "patch_size": 2,
        "in_channels": 16,
        "out_channels": 16,
        "num_layers": 2,
        "attention_head_dim": 8,
        "num_attention_heads": 4,
        "caption_projection_dim": 32,
        "joint_attention_dim": T5_WIDTH,
        "pooled_projection_dim": 2 * CLIP_WIDTH,  # both CLIPs' pooled projections, side by side
        "pos_embed_max_size": 16,
        # SD 3.5 medium's traits: QK RMS norm, and dual attention in its first layers.
        "qk_norm": "rms_norm",
        "dual_attention_layers": (0,),
    }


def build(name: str, folder: Path) -> None:
    if name == "tiny-flux":
        pipe = _flux()
    elif name == "tiny-sd3":
        pipe = _sd3()
    else:
        raise ValueError(f"builtin_flow builds tiny-flux and tiny-sd3, not {name!r}")
    pipe.save_pretrained(folder, safe_serialization=True)
    # transformers 4 reads CLIP's vocab.json / merges.txt; transformers 5 only tokenizer.json.
    for sub, pad_token in CLIP_PADS[name].items():
        write_tokenizer_files(folder / sub, pad_token)


def _flux() -> Any:
    from diffusers import (
        AutoencoderKL,
        FlowMatchEulerDiscreteScheduler,
        FluxPipeline,
        FluxTransformer2DModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    t5_tok = t5_tokenizer()
    seeded("transformer")
    transformer = FluxTransformer2DModel(**flux_transformer_config())
    seeded("vae")
    vae = AutoencoderKL(**flow_vae_config(scaling_factor=0.3611, shift_factor=0.1159))
    seeded("text_encoder")
    clip = CLIPTextModel(CLIPTextConfig(**clip_config(act="quick_gelu")))
    seeded("text_encoder_2")
    t5 = T5EncoderModel(T5Config(**t5_config(len(t5_tok))))
    return FluxPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler.from_config(FLUX_DEV_SCHEDULER),
        vae=vae,
        text_encoder=clip,
        tokenizer=clip_tokenizer(),
        text_encoder_2=t5,
        tokenizer_2=t5_tok,
        transformer=transformer,
    )


def _sd3() -> Any:
    from diffusers import (
        AutoencoderKL,
        FlowMatchEulerDiscreteScheduler,
        SD3Transformer2DModel,
        StableDiffusion3Pipeline,
    )
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection, T5Config, T5EncoderModel

    t5_tok = t5_tokenizer()
    seeded("transformer")
    transformer = SD3Transformer2DModel(**sd3_transformer_config())
    seeded("vae")
    vae = AutoencoderKL(**flow_vae_config(scaling_factor=1.5305, shift_factor=0.0609))
    seeded("text_encoder")
    clip_l = CLIPTextModelWithProjection(CLIPTextConfig(**clip_config(act="quick_gelu")))
    seeded("text_encoder_2")
    clip_g = CLIPTextModelWithProjection(CLIPTextConfig(**clip_config(act="gelu", pad_token="!")))
    seeded("text_encoder_3")
    t5 = T5EncoderModel(T5Config(**t5_config(len(t5_tok))))
    return StableDiffusion3Pipeline(
        scheduler=FlowMatchEulerDiscreteScheduler.from_config(SD3_SCHEDULER),
        vae=vae,
        text_encoder=clip_l,
        tokenizer=clip_tokenizer(),
        text_encoder_2=clip_g,
        tokenizer_2=clip_tokenizer("!"),  # bigG pads with "!", as SDXL's second tokenizer
        text_encoder_3=t5,
        tokenizer_3=t5_tok,
        transformer=transformer,
    )
