"""Configs-only diffusers folders, so a single-file checkpoint loads offline without
``model_config``.

``from_single_file`` needs a diffusers folder of the same architecture for everything a
checkpoint does not hold: ``model_index.json``, each component's ``config.json``, the
scheduler's config and the tokenizers (no weights: 5 MB per CLIP tokenizer, the rest 0.1 MB).
sdfarm writes one per architecture on first use under ``model_dir/configs/``, from the hub
configs of SD 1.5, SD 2.x (512 base and 768-v) and SDXL base, plus ``builtin:tiny-sdxl``'s,
which the checkpoint's header tells apart. Flux and SD3 single files still need
``model_config``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sdfarm.errors import ModelError
from sdfarm.families import FAMILIES
from sdfarm.worker.buildonce import build_once
from sdfarm.worker.builtin import SD15_SCHEDULER
from sdfarm.worker.builtin_sdxl import SDXL_V_SCHEDULER, SdxlConfigs, clip_config, sdxl_configs

#: Bumped when a generated folder changes, so folders written by an older sdfarm are not used.
CONFIGS_VERSION = 1

#: The single file's UNet tensors whose shapes tell the architectures of a family apart.
CONV_IN = "model.diffusion_model.input_blocks.0.0.weight"
#: First cross-attention of SD 1.x/2.x (level 0) and of SDXL (level 1): its width is the text's.
SD_CONTEXT = "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight"
XL_CONTEXT = "model.diffusion_model.input_blocks.4.1.transformer_blocks.0.attn2.to_k.weight"

SET_MODEL_CONFIG = 'set model_config = "path/to/a/diffusers/folder" of the same model'


def _sd_unet(sample_size: int, heads: int | list[int], context: int,
             linear: bool) -> dict[str, Any]:
    return {
        "sample_size": sample_size, "in_channels": 4, "out_channels": 4,
        "block_out_channels": [320, 640, 1280, 1280], "layers_per_block": 2,
        "down_block_types": ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
        "up_block_types": ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3,
        "attention_head_dim": heads, "cross_attention_dim": context,
        "use_linear_projection": linear, "norm_num_groups": 32,
    }


def _sd_vae(sample_size: int) -> dict[str, Any]:
    return {
        "in_channels": 3, "out_channels": 3, "latent_channels": 4,
        "block_out_channels": [128, 256, 512, 512], "layers_per_block": 2,
        "down_block_types": ["DownEncoderBlock2D"] * 4, "up_block_types": ["UpDecoderBlock2D"] * 4,
        "norm_num_groups": 32, "sample_size": sample_size, "scaling_factor": 0.18215,
    }


def _sd_pipeline(unet: dict, vae: dict, encoder: dict, scheduler: str, pad: str) -> dict[str, Any]:
    return {
        "pipeline": "StableDiffusionPipeline",
        "index": {"safety_checker": [None, None], "feature_extractor": [None, None],
                  "requires_safety_checker": False},
        "models": {"unet": ("UNet2DConditionModel", unet), "vae": ("AutoencoderKL", vae)},
        "encoders": {"text_encoder": ("CLIPTextModel", encoder)},
        "scheduler": (scheduler, dict(SD15_SCHEDULER)),
        "tokenizers": {"tokenizer": pad},
    }


def _xl_pipeline(configs: SdxlConfigs) -> dict[str, Any]:
    scheduler = dict(configs.scheduler)
    return {
        "pipeline": "StableDiffusionXLPipeline",
        "index": {"force_zeros_for_empty_prompt": True},
        "models": {"unet": ("UNet2DConditionModel", configs.unet),
                   "vae": ("AutoencoderKL", configs.vae)},
        "encoders": {"text_encoder": ("CLIPTextModel", configs.text_encoder),
                     "text_encoder_2": ("CLIPTextModelWithProjection", configs.text_encoder_2)},
        "scheduler": (scheduler.pop("_class_name"), scheduler),
        "tokenizers": {"tokenizer": "<|endoftext|>", "tokenizer_2": "!"},
    }


def architecture(arch: str) -> dict[str, Any]:
    """The pipeline of architecture ``arch`` (a key of :data:`ARCHITECTURES`): its class, the
    component configs and the tokenizers' pad tokens, before any prediction type is applied."""
    if arch == "sd1":  # runwayml/stable-diffusion-v1-5
        return _sd_pipeline(_sd_unet(64, 8, 768, False), _sd_vae(512),
                            clip_config(768, intermediate=3072, layers=12, heads=12,
                                        act="quick_gelu", projection=768), "PNDMScheduler",
                            "<|endoftext|>")
    if arch == "sd2-512":  # stabilityai/stable-diffusion-2-base
        return _sd_pipeline(_sd_unet(64, [5, 10, 20, 20], 1024, True), _sd_vae(512),
                            clip_config(1024, intermediate=4096, layers=23, heads=16,
                                        act="gelu", projection=512), "PNDMScheduler", "!")
    if arch == "sd2-768":  # stabilityai/stable-diffusion-2-1 (OpenCLIP-H without its last layer)
        return _sd_pipeline(_sd_unet(96, [5, 10, 20, 20], 1024, True), _sd_vae(768),
                            clip_config(1024, intermediate=4096, layers=23, heads=16,
                                        act="gelu", projection=512), "DDIMScheduler", "!")
    if arch in ("sdxl", "tiny-sdxl"):  # stabilityai/stable-diffusion-xl-base-1.0
        return _xl_pipeline(sdxl_configs(arch))
    raise ValueError(f"no configs for architecture {arch!r}")


#: Each family's architectures sdfarm has configs for; the first is the real model's, the one
#: a checkpoint whose header says nothing (a pickle) gets.
ARCHITECTURES: dict[str, tuple[str, ...]] = {
    "sd1": ("sd1",),
    "sd2": ("sd2-512", "sd2-768"),
    "sdxl": ("sdxl", "tiny-sdxl"),
}


def signature(arch: str) -> dict[str, tuple[int, ...]]:
    """The shapes a single file of ``arch`` has for a few telling tensors (conv_in's output
    and input channels, the first cross-attention's width)."""
    pipe = architecture(arch)
    unet = pipe["models"]["unet"][1]
    channels = unet["block_out_channels"]
    xl = pipe["pipeline"] == "StableDiffusionXLPipeline"
    context_key, width = (XL_CONTEXT, channels[1]) if xl else (SD_CONTEXT, channels[0])
    return {CONV_IN: (channels[0], unet["in_channels"]),
            context_key: (width, unet["cross_attention_dim"])}


def config_name(shapes: Mapping[str, tuple[int, ...]], family: str, prediction: str) -> str:
    """The name of the configs folder for a single file of ``family`` with these tensor
    ``shapes`` (empty when unknown), e.g. ``sdxl-epsilon`` or ``tiny-sdxl-v``."""
    if family not in ARCHITECTURES:
        raise _no_configs(family)
    if prediction not in ("epsilon", "v"):
        raise ModelError(f"{FAMILIES[family].title} single files take prediction epsilon or v, "
                         f"not {prediction!r}")
    candidates = ARCHITECTURES[family]
    if family == "sd2":  # SD 2.x's 512 base and 768-v share every shape: prediction tells
        candidates = ("sd2-768",) if prediction == "v" else ("sd2-512",)
    arch = _matching(shapes, candidates, family)
    return f"{arch}-{prediction}"


def _matching(shapes: Mapping[str, tuple[int, ...]], candidates: tuple[str, ...],
              family: str) -> str:
    if not shapes:
        return candidates[0]
    for arch in candidates:
        if not _mismatches(shapes, arch):
            return arch
    key, found, want = _mismatches(shapes, candidates[0])[0]
    title = FAMILIES[family].title
    raise ModelError(f"sdfarm has no configs for {title} single files of this size ({key} has "
                     f"shape {list(found)}, {title}'s starts {list(want)}): {SET_MODEL_CONFIG}")


def _mismatches(shapes: Mapping[str, tuple[int, ...]],
                arch: str) -> list[tuple[str, tuple[int, ...], tuple[int, ...]]]:
    """(key, shape in the file, shape ``arch`` has) for each telling tensor that differs; a
    tensor the file does not have differs from nothing."""
    return [(key, tuple(shapes[key]), want) for key, want in signature(arch).items()
            if key in shapes and tuple(shapes[key])[:len(want)] != want]


def _no_configs(family: str) -> ModelError:
    if family in FAMILIES:
        title = FAMILIES[family].title
        return ModelError(
            f"{title} single files need their model's diffusers configs: {SET_MODEL_CONFIG} "
            f"(its configs and tokenizers, the weights may be left out); sdfarm has configs for "
            f"SD 1.x, SD 2.x and SDXL files only, since {title}'s large T5 text encoder often "
            f"ships apart or differs between releases")
    known = ", ".join(ARCHITECTURES)
    return ModelError(f"unknown model family {family!r}: sdfarm has single-file configs for "
                      f"{known}; {SET_MODEL_CONFIG}")


def single_file_config(shapes: Mapping[str, tuple[int, ...]], family: str, prediction: str,
                       model_dir: Path) -> Path:
    """A configs-only diffusers folder for a single file of ``family`` with these tensor
    ``shapes``, written under ``model_dir`` on first use (once, under a lock, renamed into
    place whole, as the built-in models are)."""
    name = config_name(shapes, family, prediction)
    parent = model_dir / "configs" / f"v{CONFIGS_VERSION}"
    try:
        return build_once(parent / name, lambda folder: write_configs(name, folder))
    except OSError as exc:
        raise ModelError(f"cannot write single-file configs in {str(parent)!r}: {exc}") from exc


def write_configs(name: str, folder: Path) -> None:
    """Write configs folder ``name`` (from :func:`config_name`) into ``folder``."""
    import diffusers
    from transformers import CLIPTextConfig

    from sdfarm.worker.builtin import quiet_libraries
    from sdfarm.worker.clip_vocab import write_tokenizer_files

    arch, _, prediction = name.rpartition("-")
    pipe = architecture(arch)
    version = diffusers.__version__
    index: dict[str, Any] = {"_class_name": pipe["pipeline"], "_diffusers_version": version,
                             **pipe["index"]}
    for component, (cls, config) in pipe["models"].items():
        index[component] = ["diffusers", cls]
        _write_json(folder / component / "config.json",
                    {"_class_name": cls, "_diffusers_version": version, **config})
    for component, (cls, config) in pipe["encoders"].items():
        index[component] = ["transformers", cls]
        (folder / component).mkdir()
        CLIPTextConfig(**config, architectures=[cls]).save_pretrained(folder / component)
    cls, scheduler = pipe["scheduler"]
    index["scheduler"] = ["diffusers", cls]
    scheduler = {**scheduler, "prediction_type": "epsilon"}
    if prediction == "v":
        scheduler.update(prediction_type="v_prediction")
        if pipe["pipeline"] == "StableDiffusionXLPipeline":
            scheduler.update(SDXL_V_SCHEDULER)
    _write_json(folder / "scheduler" / "scheduler_config.json",
                {"_class_name": cls, "_diffusers_version": version, **scheduler})
    with quiet_libraries():
        for component, pad in pipe["tokenizers"].items():
            index[component] = ["transformers", "CLIPTokenizer"]
            write_tokenizer_files(folder / component, pad)
    _write_json(folder / "model_index.json", index)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
