"""What another tool's own JSON says an image was made with, before sdfarm checks it.

Each reader (ComfyUI, InvokeAI, NovelAI, SwarmUI, Fooocus) fills a :class:`Reading` with the
values it found, named as RenderSpec names them, and the tool's other settings as extras;
``metadata.generation`` types and bounds them all alike. Pure: standard library only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import PureWindowsPath
from typing import Literal

from sdfarm.errors import ImageMetadataError

Tool = Literal["comfyui", "invokeai", "novelai", "swarmui", "fooocus"]
_CHECKPOINT_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin", ".gguf", ".sft")


@dataclass
class Reading:
    tool: Tool
    #: Where the values came from, as error messages name it ("ComfyUI 'prompt' graph").
    where: str
    #: RenderSpec field -> value as the tool wrote it (typed and bounded by the caller).
    values: dict[str, object] = field(default_factory=dict)
    #: Settings sdfarm has no column for, as text.
    extra: dict[str, str] = field(default_factory=dict)

    def problem(self, text: str) -> ImageMetadataError:
        return ImageMetadataError(f"malformed {self.where}: {text}")


def load_json_object(text: str, where: str) -> dict:
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ImageMetadataError(f"malformed {where}: not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ImageMetadataError(f"malformed {where}: not a JSON object")
    return data


def as_text(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def as_list(value: object) -> list:
    """A list setting, or nothing when the tool wrote something else there."""
    return value if isinstance(value, list) else []


def is_set(value: object) -> bool:
    """Whether a tool's setting is switched on: its off values (null, false, 0, "", "None",
    empty lists) are left out of the extras, so a rerun does not warn about them."""
    if isinstance(value, str):
        return value.strip() not in ("", "None", "none")
    return value not in (None, False, 0, [], {})


def checkpoint_name(name: str) -> str:
    """A checkpoint file as A1111's ``Model:`` names it: its file name without folder (either
    separator) or extension, so history finds it as it finds A1111's."""
    path = PureWindowsPath(name.strip())
    return path.stem if path.suffix.lower() in _CHECKPOINT_SUFFIXES else path.name


def lora_list(pairs: list[tuple[object, object]]) -> str:
    """LoRAs as ``name: weight, ...`` (names as :func:`checkpoint_name` gives them)."""
    return ", ".join(f"{checkpoint_name(str(name))}: {weight}" for name, weight in pairs)
