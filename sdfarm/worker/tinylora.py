"""A tiny random LoRA for a built-in model: the example job file and the tests render with it
on a machine with no downloads.

It is made with the real classes: peft LoRA layers (rank 4) on the UNet's attention
projections and the text encoder's, random (not zero) so they change the pixels, saved in
diffusers' layout (``save_lora_weights``) or kohya's (``lora_unet_...``/``lora_te_...``, as
A1111 users download them). Deterministic: one seed gives the same file.

    python -m sdfarm.worker.tinylora ghibli               # loras/ghibli.safetensors
    python -m sdfarm.worker.tinylora ghibli --kohya --seed 3 --model builtin:tiny-sdxl
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Literal

from sdfarm.worker.builtin import ensure_builtin, quiet_libraries

Layout = Literal["diffusers", "kohya"]
UNET_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]
TEXT_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj"]


def write_tiny_lora(path: Path, model_dir: Path, *, builtin: str = "tiny",
                    layout: Layout = "diffusers", seed: int = 0, rank: int = 4) -> Path:
    """Write a random LoRA for ``builtin:<builtin>`` to ``path`` (a ``.safetensors`` file)."""
    return write_tiny_loras({path: layout}, model_dir, builtin=builtin, seed=seed, rank=rank)[0]


def write_tiny_loras(paths: dict[Path, Layout], model_dir: Path, *, builtin: str = "tiny",
                     seed: int = 0, rank: int = 4) -> list[Path]:
    """One random LoRA written to several files, each in its layout (one model load)."""
    import torch
    from peft import LoraConfig, get_peft_model_state_dict, inject_adapter_in_model

    with quiet_libraries():
        from diffusers import DiffusionPipeline

        pipe = DiffusionPipeline.from_pretrained(ensure_builtin(builtin, model_dir))
    encoders = [e for e in (getattr(pipe, "text_encoder", None),
                            getattr(pipe, "text_encoder_2", None)) if e is not None]
    torch.manual_seed(seed)
    pipe.unet.add_adapter(LoraConfig(r=rank, lora_alpha=rank, init_lora_weights=False,
                                     target_modules=UNET_TARGETS))
    # transformers 5 wants peft >= 0.22 for add_adapter on a text encoder: inject instead.
    for encoder in encoders:
        inject_adapter_in_model(LoraConfig(r=rank, lora_alpha=rank, init_lora_weights=False,
                                           target_modules=TEXT_TARGETS), encoder)
    parts = {"unet": get_peft_model_state_dict(pipe.unet)}
    for n, encoder in enumerate(encoders):
        parts["text_encoder" if n == 0 else "text_encoder_2"] = get_peft_model_state_dict(encoder)
    for path, layout in paths.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        if layout == "kohya":
            _save_kohya(parts, path)
        else:
            _save_diffusers(type(pipe), parts, path)
    return list(paths)


def _save_diffusers(pipeline_class, parts: dict, path: Path) -> None:
    from diffusers.utils import convert_state_dict_to_diffusers

    layers = {"unet_lora_layers": convert_state_dict_to_diffusers(parts["unet"])}
    for name in ("text_encoder", "text_encoder_2"):
        if name in parts:
            layers[f"{name}_lora_layers"] = convert_state_dict_to_diffusers(parts[name])
    with quiet_libraries():
        pipeline_class.save_lora_weights(str(path.parent), weight_name=path.name, **layers)


def _save_kohya(parts: dict, path: Path) -> None:
    from diffusers.utils import convert_state_dict_to_kohya
    from safetensors.torch import save_file

    full = {f"unet.{k}": v for k, v in parts["unet"].items()}
    two_encoders = "text_encoder_2" in parts
    for name in ("text_encoder", "text_encoder_2"):
        for key, value in parts.get(name, {}).items():
            # kohya names follow the original CLIP's module paths, which transformers 5 no
            # longer prefixes with "text_model.".
            full[f"{name}.{key if key.startswith('text_model.') else 'text_model.' + key}"] = value
    kohya = convert_state_dict_to_kohya(full)
    if not two_encoders:  # SD 1.x files name their one encoder lora_te_, not lora_te1_
        kohya = {k.replace("lora_te1_", "lora_te_"): v for k, v in kohya.items()}
    save_file({k: v.contiguous() for k, v in kohya.items()}, str(path))


def main(argv: list[str] | None = None) -> None:
    from sdfarm.config import Settings

    parser = argparse.ArgumentParser(prog="python -m sdfarm.worker.tinylora",
                                     description="Write a tiny random LoRA for a built-in model "
                                                 "into the LoRA folder (SDFARM_LORA_DIR).")
    parser.add_argument("name", help="the LoRA's name: <lora:NAME:weight> in a prompt")
    parser.add_argument("--model", default="builtin:tiny", help="built-in model it is for")
    parser.add_argument("--kohya", action="store_true", help="kohya's layout (A1111 files)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    path = settings.lora_folder / f"{args.name}.safetensors"
    write_tiny_lora(path, settings.model_dir, builtin=args.model.removeprefix("builtin:"),
                    layout="kohya" if args.kohya else "diffusers", seed=args.seed)
    print(path)


if __name__ == "__main__":
    main()
