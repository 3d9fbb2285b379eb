"""Which device and dtype a worker renders on, from settings, never a literal ``"cuda"``."""

from __future__ import annotations

import torch

from sdfarm.errors import SdfarmError


def resolve_device(setting: str) -> str:
    if setting == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if setting.startswith("cuda") and not torch.cuda.is_available():
        raise SdfarmError(f"SDFARM_DEVICE={setting} but torch sees no CUDA GPU "
                          "(is the CUDA build of torch installed? see README, 'GPU install')")
    return setting


def resolve_dtype(setting: str, device: str) -> torch.dtype:
    if setting == "auto":
        return torch.float32 if device == "cpu" else torch.float16
    try:
        return {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}[setting]
    except KeyError:
        raise SdfarmError(f"SDFARM_DTYPE={setting}: allowed are auto, float16, bfloat16, float32") from None


def device_label(device: str) -> str:
    """What is recorded on a job: the device and, for a GPU, its name."""
    if device.startswith("cuda"):
        index = torch.device(device).index or 0
        return f"{device} ({torch.cuda.get_device_name(index)})"
    return device
