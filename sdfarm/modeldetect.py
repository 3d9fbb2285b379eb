"""Which family a model is, and what its denoiser predicts, from its files' descriptions only.

A diffusers folder is read from its JSON files (``model_index.json``, the components'
configs); a single ``.safetensors`` file from its header (key names, a few shapes, metadata),
never its tensors, so a 7 GB checkpoint is classified in milliseconds. The single-file rules
follow diffusers' ``infer_diffusers_model_type`` (``loaders/single_file_utils.py``), except
that nothing unknown falls back to SD 1.x, and v-prediction markers are read, which diffusers
ignores. Pure: the standard library only.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sdfarm.checkpoints import Header, read_header
from sdfarm.errors import ModelError
from sdfarm.families import FAMILY_NAMES


@dataclass(frozen=True)
class Detection:
    """What a model is: its family (``sdfarm.families.FAMILY_NAMES``), its prediction type
    (``epsilon``, ``v`` or ``flow``) and, in words, what was found that says so."""

    family: str
    prediction: str
    found: str


#: The end of every refusal: what sdfarm does render.
_RENDERS = f"sdfarm renders {', '.join(FAMILY_NAMES)}"

# --- diffusers folders -------------------------------------------------------------------

#: ``model_index.json`` ``_class_name`` → family (``sd`` is sd1 or sd2, told by the configs).
PIPELINE_FAMILIES: dict[str, str] = {
    "StableDiffusionPipeline": "sd",
    "StableDiffusionImg2ImgPipeline": "sd",
    "StableDiffusionXLPipeline": "sdxl",
    "StableDiffusionXLImg2ImgPipeline": "sdxl",
    "FluxPipeline": "flux",
    "FluxImg2ImgPipeline": "flux",
    "StableDiffusion3Pipeline": "sd3",
    "StableDiffusion3Img2ImgPipeline": "sd3",
}

#: Width of SD 2.x's text encoder (OpenCLIP ViT-H) and its UNet's cross-attention; SD 1.x: 768.
SD2_WIDTH = 1024


def detect_folder(path: Path) -> Detection:
    """The family of the diffusers folder at ``path``; :class:`ModelError` naming the folder
    and what was found when it is not one sdfarm renders."""
    path = Path(path)
    if not path.is_dir():
        what = "is a file, not a diffusers folder" if path.exists() else "no such folder"
        raise _error(path, what)
    index = _read_json(path, "model_index.json")
    if index is None:
        raise _error(path, "no model_index.json (not a diffusers folder)")
    cls = index.get("_class_name")
    if not isinstance(cls, str) or not cls:
        raise _error(path, "model_index.json has no _class_name")
    kind = PIPELINE_FAMILIES.get(cls)
    if kind is None:
        raise _error(path, f"a {cls} folder is not supported ({_RENDERS})")
    where = f"diffusers folder, {cls}"
    if kind == "flux":
        config = _read_json(path, "transformer/config.json")
        if config is None:
            raise _error(path, f"a {cls} folder without transformer/config.json: cannot tell "
                               "flux-dev (guidance_embeds) from flux-schnell")
        if config.get("guidance_embeds"):
            return Detection("flux-dev", "flow", f"Flux.1-dev ({where}, guidance_embeds)")
        return Detection("flux-schnell", "flow", f"Flux.1-schnell ({where}, no guidance_embeds)")
    if kind == "sd3":
        return Detection("sd3", "flow", f"SD3 ({where})")
    unet = _read_json(path, "unet/config.json") or {}
    if unet.get("in_channels") == 9:
        raise _error(path, f"an inpainting {cls} folder (UNet in_channels 9) is not supported "
                           f"({_RENDERS})")
    if kind == "sdxl":
        if _is_refiner_index(index):
            raise _error(path, f"an SDXL refiner folder ({cls} without its first text encoder) "
                               f"is not supported ({_RENDERS})")
        family, words = "sdxl", f"SDXL base ({where})"
    else:
        encoder = _read_json(path, "text_encoder/config.json") or {}
        if encoder.get("hidden_size") == SD2_WIDTH:
            family, words = "sd2", f"SD 2.x ({where}, text encoder hidden_size {SD2_WIDTH})"
        elif unet.get("cross_attention_dim") == SD2_WIDTH:
            family, words = "sd2", f"SD 2.x ({where}, UNet cross_attention_dim {SD2_WIDTH})"
        else:
            family, words = "sd1", f"SD 1.x ({where})"
    scheduler = _read_json(path, "scheduler/scheduler_config.json") or {}
    kind_of = scheduler.get("prediction_type") or "epsilon"
    if kind_of == "v_prediction":
        return Detection(family, "v", f"{words}, v-prediction (scheduler prediction_type)")
    if kind_of != "epsilon":
        raise _error(path, f"scheduler prediction_type {kind_of!r} is not supported "
                           "(epsilon or v_prediction)")
    return Detection(family, "epsilon", words)


def _is_refiner_index(index: Mapping[str, Any]) -> bool:
    """SDXL's refiner ships as StableDiffusionXLImg2ImgPipeline with no first text encoder
    (``"text_encoder": [null, null]``) and ``requires_aesthetics_score``."""
    encoder = index.get("text_encoder")
    return (bool(index.get("requires_aesthetics_score"))
            or encoder is None or (isinstance(encoder, list) and None in encoder))


def _read_json(folder: Path, rel: str) -> dict[str, Any] | None:
    """The JSON object in ``folder/rel``; None when the file is not there."""
    try:
        raw = (folder / rel).read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise _error(folder, f"cannot read {rel}: {exc.strerror or exc}") from exc
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise _error(folder, f"{rel} is not valid JSON") from exc
    if not isinstance(data, dict):
        raise _error(folder, f"{rel} is not a JSON object")
    return data


# --- single files ------------------------------------------------------------------------

#: Where the original (LDM) layout keeps the denoiser; Flux and SD3 files may use it too.
UNET = "model.diffusion_model."

#: diffusers' CHECKPOINT_KEY_NAMES, the ones these rules need.
V1_KEY = UNET + "output_blocks.11.0.skip_connection.weight"
V2_KEY = UNET + "input_blocks.2.1.transformer_blocks.0.attn2.to_k.weight"  # shape[-1] 1024
INPUT_CONV_KEY = UNET + "input_blocks.0.0.weight"  # shape[1]: 9 inpainting, 8 pix2pix
XL_BASE_KEY = "conditioner.embedders.1.model.transformer.resblocks.9.mlp.c_proj.bias"
XL_REFINER_KEY = "conditioner.embedders.0.model.transformer.resblocks.9.mlp.c_proj.bias"
XL_UNET_KEY = UNET + "label_emb.0.0.weight"
UPSCALE_KEY = UNET + "input_blocks.10.0.skip_connection.bias"
CONTROLNET_KEYS = ("control_model.time_embed.0.weight", "controlnet_cond_embedding.conv_in.weight")
CASCADE_KEYS = ("clip_txt_mapper.weight", "down_blocks.1.0.channelwise.0.weight")
#: Denoiser keys that may come bare or under :data:`UNET` (see :func:`_shape`).
SD3_KEY = "joint_blocks.0.context_block.adaLN_modulation.1.bias"
SD35_LARGE_KEY = "joint_blocks.37.x_block.mlp.fc1.weight"
FLUX_KEY = "double_blocks.0.img_attn.norm.key_norm.scale"
FLUX_GUIDANCE_KEY = "guidance_in.in_layer.bias"
#: Flux's relatives, checked before Flux because they share its double blocks.
FLUX_RELATIVES = {
    "single_stream_modulation.lin.weight": "a Flux.2 checkpoint",
    "early_stream_modulations.image.lin.weight": "a Flux.3 checkpoint",
    "distilled_guidance_layer.in_proj.bias": "a Chroma checkpoint",
}
#: Flux.1 variants told by ``img_in.weight`` shape[1] (packed input channels).
FLUX_INPUTS = {384: "a Flux.1 Fill (inpainting) checkpoint", 128: "a Flux.1 Depth checkpoint"}

#: Key substrings that only LoRA (and LyCORIS) files have.
LORA_MARKS = (".lora_down.", ".lora_up.", "lora_A.", "lora_B.", ".lora.down.", ".hada_w1_a",
              ".lokr_w1")
#: Top-level names of a VAE's tensors (original and diffusers layouts).
VAE_PREFIXES = ("encoder.", "decoder.", "quant_conv.", "post_quant_conv.", "first_stage_model.")

#: ``modelspec.prediction_type`` values that mean epsilon (v is anything starting with "v").
EPSILON_NAMES = ("epsilon", "eps")


def detect_file(path: Path) -> Detection:
    """The family of the single ``.safetensors`` checkpoint at ``path``, from its header;
    :class:`ModelError` naming the file and what was found when it is not one sdfarm renders."""
    path = Path(path)
    header = read_header(path)
    family, words = _architecture(path, header.shapes)
    if family in ("flux-dev", "flux-schnell", "sd3"):
        return Detection(family, "flow", words)
    prediction, marker = _prediction(path, header)
    if marker:
        words += f", {'v-prediction' if prediction == 'v' else 'epsilon'} ({marker})"
    elif family == "sd2":  # SD 2.x 768-v has the same keys as 512 epsilon: nothing tells
        words += ", epsilon assumed (no v-prediction marker)"
    return Detection(family, prediction, words)


def _architecture(path: Path, shapes: Mapping[str, tuple[int, ...]]) -> tuple[str, str]:
    """(family, words) from the key names, in diffusers' order; refusals raise."""
    if not shapes:
        raise _error(path, "the file holds no tensors")
    if any(key.startswith("lora_") or any(m in key for m in LORA_MARKS) for key in shapes):
        raise _error(path, "this is a LoRA, not a checkpoint")
    in_channels = _dim(shapes.get(INPUT_CONV_KEY), 1)
    if in_channels == 9:
        what = ("an SD 2.x inpainting" if _dim(shapes.get(V2_KEY), -1) == 1024
                else "an SDXL inpainting" if XL_BASE_KEY in shapes else "an SD 1.x inpainting")
        raise _unsupported(path, f"{what} checkpoint (9 input channels)")
    if in_channels == 8:
        raise _unsupported(path, "an InstructPix2Pix checkpoint (8 input channels)")
    if UPSCALE_KEY in shapes:  # no SD 1.x/2.x UNet has it; checked before v2 to be safe
        raise _unsupported(path, "an SD upscaler checkpoint")
    if _dim(shapes.get(V2_KEY), -1) == 1024:
        return "sd2", "SD 2.x checkpoint"
    if "edm_mean" in shapes:
        raise _unsupported(path, "a Playground v2.5 checkpoint (edm_mean key)")
    if "edm_vpred.sigma_max" in shapes:
        raise _unsupported(path, "an EDM v-prediction (CosXL) checkpoint")
    if XL_BASE_KEY in shapes:
        return "sdxl", "SDXL checkpoint"
    if XL_REFINER_KEY in shapes:
        raise _unsupported(path, "an SDXL refiner checkpoint")
    if any(key in shapes for key in CONTROLNET_KEYS):
        raise _unsupported(path, "a ControlNet")
    if any(key in shapes for key in CASCADE_KEYS):
        raise _unsupported(path, "a Stable Cascade checkpoint")
    if _shape(shapes, SD3_KEY) is not None or _shape(shapes, SD35_LARGE_KEY) is not None:
        return "sd3", _sd3_words(shapes)
    for key, what in FLUX_RELATIVES.items():
        if _shape(shapes, key) is not None:
            raise _unsupported(path, what)
    if _shape(shapes, FLUX_KEY) is not None:
        if _shape(shapes, FLUX_GUIDANCE_KEY) is None:
            return "flux-schnell", "Flux.1-schnell checkpoint (no guidance_in key)"
        variant = FLUX_INPUTS.get(_dim(_shape(shapes, "img_in.weight"), 1) or 0)
        if variant:
            raise _unsupported(path, variant)
        return "flux-dev", "Flux.1-dev checkpoint (guidance_in key)"
    if V1_KEY in shapes:
        return "sd1", "SD 1.x checkpoint"
    if XL_UNET_KEY in shapes:
        raise _unsupported(path, "an SDXL UNet alone (no conditioner.* text encoder keys)")
    if all(key.startswith(VAE_PREFIXES) for key in shapes):
        raise _error(path, "this is a VAE, not a checkpoint")
    raise _error(path, f"unknown architecture (keys under {_prefixes(shapes)}; {_RENDERS})")


def _sd3_words(shapes: Mapping[str, tuple[int, ...]]) -> str:
    if _shape(shapes, SD35_LARGE_KEY) is not None:
        return "SD 3.5 Large checkpoint"
    positions = _dim(_shape(shapes, "pos_embed"), 1)  # 192² SD3 Medium, 384² SD 3.5 Medium
    if positions == 147456:
        return "SD 3.5 Medium checkpoint"
    return "SD3 Medium checkpoint" if positions == 36864 else "SD3 checkpoint"


def _prediction(path: Path, header: Header) -> tuple[str, str | None]:
    """(prediction, the marker that says so or None) for a UNet checkpoint. diffusers reads
    none of these: NoobAI-XL v-pred would load as epsilon and render noise."""
    for key in ("v_pred", "ztsnr"):
        if key in header.shapes:
            return "v", f"{key} key"
    value = header.metadata.get("modelspec.prediction_type", "").strip().lower()
    if value in EPSILON_NAMES:
        return "epsilon", "modelspec.prediction_type"
    if value.startswith("v"):
        return "v", "modelspec.prediction_type"
    if value:
        raise _error(path, f"modelspec.prediction_type {value!r} is not supported (epsilon or v)")
    if header.metadata.get("modelspec.architecture", "").strip().lower().endswith("-v"):
        return "v", "modelspec.architecture"  # "stable-diffusion-v2-768-v"
    return "epsilon", None


def _shape(shapes: Mapping[str, tuple[int, ...]], key: str) -> tuple[int, ...] | None:
    """The shape of denoiser tensor ``key``, bare or under :data:`UNET`."""
    found = shapes.get(key)
    return found if found is not None else shapes.get(UNET + key)


def _dim(shape: tuple[int, ...] | None, axis: int) -> int | None:
    if shape is None or not -len(shape) <= axis < len(shape):
        return None
    return shape[axis]


def _prefixes(keys: Mapping[str, object]) -> str:
    """The three commonest top-level key prefixes (two levels under ``model.``), quoted."""
    def prefix(key: str) -> str:
        parts = key.split(".")
        return ".".join(parts[:2] if parts[0] == "model" and len(parts) > 2 else parts[:1])

    counts = Counter(prefix(key) for key in keys)
    top = sorted(counts, key=lambda p: (-counts[p], p))[:3]
    return ", ".join(f"'{p}'" if p in keys else f"'{p}.*'" for p in top)


# --- errors ------------------------------------------------------------------------------

def _error(path: Path, problem: str) -> ModelError:
    return ModelError(f"model {str(path)!r}: {problem}")


def _unsupported(path: Path, what: str) -> ModelError:
    return _error(path, f"{what} is not supported ({_RENDERS})")
