"""Writing a diffusers SDXL folder as one original-layout ``.safetensors`` file, the way
A1111, ComfyUI and Civitai checkpoints are laid out.

The reverse of what diffusers' ``from_single_file`` reads: the UNet under
``model.diffusion_model.`` (Stability's ``input_blocks`` / ``middle_block`` /
``output_blocks``), the VAE under ``first_stage_model.``, CLIP ViT-L under
``conditioner.embedders.0.transformer.text_model.`` and the OpenCLIP encoder under
``conditioner.embedders.1.model.`` (fused attention input projection, transposed text
projection). Any number of levels and layers per block, so tiny models convert too.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

UNET = "model.diffusion_model."
VAE = "first_stage_model."
CLIP = "conditioner.embedders.0.transformer.text_model."
OPEN_CLIP = "conditioner.embedders.1.model."

#: diffusers UNet names → original ones, for the tensors outside the levels.
_UNET_TOP = {
    "time_embedding.linear_1": "time_embed.0",
    "time_embedding.linear_2": "time_embed.2",
    "add_embedding.linear_1": "label_emb.0.0",
    "add_embedding.linear_2": "label_emb.0.2",
    "conv_in": "input_blocks.0.0",
    "conv_norm_out": "out.0",
    "conv_out": "out.2",
}
_RESNET = {"norm1": "in_layers.0", "conv1": "in_layers.2", "norm2": "out_layers.0",
           "conv2": "out_layers.3", "time_emb_proj": "emb_layers.1",
           "conv_shortcut": "skip_connection"}
_VAE_ATTENTION = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v",
                  "to_out.0": "proj_out"}
#: OpenCLIP names of a text transformer layer's parts.
_OPEN_CLIP_LAYER = {"layer_norm1": "ln_1", "layer_norm2": "ln_2", "mlp.fc1": "mlp.c_fc",
                    "mlp.fc2": "mlp.c_proj", "self_attn.out_proj": "attn.out_proj"}
_OPEN_CLIP_TOP = {"embeddings.token_embedding.weight": "token_embedding.weight",
                  "embeddings.position_embedding.weight": "positional_embedding",
                  "final_layer_norm.weight": "ln_final.weight",
                  "final_layer_norm.bias": "ln_final.bias"}


def write_original_sdxl(folder: Path, dest: Path, metadata: dict[str, str] | None = None) -> Path:
    """Write the SDXL diffusers folder ``folder`` (safetensors weights) as the single file
    ``dest``, with ``metadata`` (e.g. ``modelspec.prediction_type``) in its header."""
    from safetensors.torch import load_file, save_file

    folder = Path(folder)
    unet_config = _config(folder / "unet")
    vae_config = _config(folder / "vae")
    out: dict[str, torch.Tensor] = {}
    out.update(unet_tensors(load_file(folder / "unet" / "diffusion_pytorch_model.safetensors"),
                            unet_config))
    out.update(vae_tensors(load_file(folder / "vae" / "diffusion_pytorch_model.safetensors"),
                           len(vae_config["up_block_types"])))
    out.update(clip_tensors(load_file(folder / "text_encoder" / "model.safetensors")))
    out.update(open_clip_tensors(load_file(folder / "text_encoder_2" / "model.safetensors")))
    save_file({k: v.contiguous() for k, v in out.items()}, dest, metadata=metadata)
    return dest


def _config(folder: Path) -> dict:
    return json.loads((folder / "config.json").read_text(encoding="utf-8"))


def unet_tensors(state: dict[str, torch.Tensor], config: dict) -> dict[str, torch.Tensor]:
    """A diffusers ``UNet2DConditionModel`` state dict in the original layout."""
    layers = int(config["layers_per_block"])
    attention_up = [t.startswith("CrossAttn") for t in config["up_block_types"]]
    return {UNET + unet_key(key, layers, attention_up): value for key, value in state.items()}


def unet_key(key: str, layers: int, attention_up: list[bool]) -> str:
    """The original name of a diffusers UNet tensor. Level ``b`` of the down path is input
    blocks ``(layers + 1) * b + 1 ...``, its downsampler last; up levels have one layer more."""
    parts = key.split(".")
    head = parts[0]
    if head == "down_blocks":
        block, kind = int(parts[1]), parts[2]
        if kind == "downsamplers":  # down_blocks.b.downsamplers.0.conv.weight
            return f"input_blocks.{(layers + 1) * (block + 1)}.0.op.{parts[-1]}"
        index = (layers + 1) * block + int(parts[3]) + 1
        return f"input_blocks.{index}.{_part(kind, parts[4:])}"
    if head == "up_blocks":
        block, kind = int(parts[1]), parts[2]
        if kind == "upsamplers":  # after the resnet, and the attention where there is one
            slot = 2 if attention_up[block] else 1
            return f"output_blocks.{(layers + 1) * block + layers}.{slot}.conv.{parts[-1]}"
        index = (layers + 1) * block + int(parts[3])
        return f"output_blocks.{index}.{_part(kind, parts[4:])}"
    if head == "mid_block":  # resnet, attention, resnet
        if parts[1] == "resnets":
            return f"middle_block.{2 * int(parts[2])}.{_resnet(parts[3:])}"
        return f"middle_block.1.{'.'.join(parts[3:])}"
    return f"{_UNET_TOP['.'.join(parts[:-1])]}.{parts[-1]}"


def _part(kind: str, rest: list[str]) -> str:
    # An original block is a list: [resnet, attention?, resampler?].
    return f"0.{_resnet(rest)}" if kind == "resnets" else f"1.{'.'.join(rest)}"


def _resnet(rest: list[str]) -> str:
    return ".".join([_RESNET.get(rest[0], rest[0]), *rest[1:]])


def vae_tensors(state: dict[str, torch.Tensor], levels: int) -> dict[str, torch.Tensor]:
    """A diffusers ``AutoencoderKL`` state dict in the original layout."""
    out = {}
    for key, value in state.items():
        name = vae_key(key, levels)
        if ".mid.attn_1." in name and value.ndim == 2:
            value = value[:, :, None, None]  # the original attention uses 1x1 convolutions
        out[VAE + name] = value
    return out


def vae_key(key: str, levels: int) -> str:
    """The original name of a diffusers VAE tensor; the decoder's levels are numbered from
    the bottom there."""
    parts = key.split(".")
    side = parts[0]
    if len(parts) > 3 and parts[1] in ("down_blocks", "up_blocks"):
        down = parts[1] == "down_blocks"
        level = int(parts[2]) if down else levels - 1 - int(parts[2])
        where = f"{side}.{'down' if down else 'up'}.{level}"
        if parts[3] in ("downsamplers", "upsamplers"):
            return f"{where}.{'downsample' if down else 'upsample'}.conv.{parts[-1]}"
        return f"{where}.block.{parts[4]}.{_shortcut('.'.join(parts[5:]))}"
    if len(parts) > 3 and parts[1] == "mid_block":
        if parts[2] == "resnets":
            return f"{side}.mid.block_{int(parts[3]) + 1}.{_shortcut('.'.join(parts[4:]))}"
        return f"{side}.mid.attn_1.{_VAE_ATTENTION['.'.join(parts[4:-1])]}.{parts[-1]}"
    return key.replace("conv_norm_out", "norm_out")


def _shortcut(rest: str) -> str:
    return rest.replace("conv_shortcut", "nin_shortcut")


def clip_tensors(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A transformers ``CLIPTextModel`` state dict as SDXL's first embedder (transformers 5
    saves it without the ``text_model.`` level the original layout has)."""
    return {CLIP + key.removeprefix("text_model."): value for key, value in state.items()}


def open_clip_tensors(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A transformers ``CLIPTextModelWithProjection`` state dict in OpenCLIP's layout, as
    SDXL's second embedder."""
    out: dict[str, torch.Tensor] = {}
    fused: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        name = key.removeprefix("text_model.")
        if name == "text_projection.weight":
            out[OPEN_CLIP + "text_projection"] = value.T  # OpenCLIP multiplies x @ projection
        elif name in _OPEN_CLIP_TOP:
            out[OPEN_CLIP + _OPEN_CLIP_TOP[name]] = value
        elif name.startswith("encoder.layers."):
            _, _, index, *rest = name.split(".")
            part, kind = ".".join(rest[:-1]), rest[-1]
            block = f"{OPEN_CLIP}transformer.resblocks.{index}."
            if part in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"):
                # OpenCLIP keeps q, k and v as one input projection, in that order.
                fused.setdefault(f"{block}attn.in_proj_{kind}", {})[part[-6]] = value
            else:
                out[block + f"{_OPEN_CLIP_LAYER[part]}.{kind}"] = value
        else:
            raise ValueError(f"unexpected tensor in the second text encoder: {key!r}")
    for name, qkv in fused.items():
        out[name] = torch.cat([qkv["q"], qkv["k"], qkv["v"]])
    return out
