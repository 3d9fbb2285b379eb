"""Reading a ``.safetensors`` checkpoint's header: its tensors' names, shapes and dtypes, and
its metadata, without reading a byte of the tensors. Pure (standard library only), so planning
can look inside a 7 GB checkpoint in milliseconds.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path

from sdfarm.errors import ModelError

#: A header larger than this is not a checkpoint's (real ones are a few MB at most).
MAX_HEADER_BYTES = 100 << 20


@dataclass(frozen=True)
class Header:
    """What a safetensors file says about itself."""

    #: Tensor name → shape.
    shapes: dict[str, tuple[int, ...]]
    #: Tensor name → dtype as safetensors spells it (``F16``, ``BF16``, ``F32``, ...).
    dtypes: dict[str, str]
    #: The ``__metadata__`` strings (``modelspec.*`` and the like); empty when there are none.
    metadata: dict[str, str]


def read_header(path: Path) -> Header:
    """The header of the safetensors file at ``path``; :class:`ModelError` naming the file when
    it is not one."""
    try:
        with open(path, "rb") as f:
            prefix = f.read(8)
            if len(prefix) < 8:
                raise ModelError(f"{str(path)!r} is not a safetensors file (it is too short)")
            (size,) = struct.unpack("<Q", prefix)
            if size > MAX_HEADER_BYTES:
                raise ModelError(f"{str(path)!r} is not a safetensors file (header size {size})")
            raw = f.read(size)
    except OSError as exc:
        raise ModelError(f"cannot read {str(path)!r}: {exc.strerror or exc}") from exc
    try:
        header = json.loads(raw)
        if not isinstance(header, dict):
            raise ValueError("not an object")
    except (ValueError, UnicodeDecodeError) as exc:
        raise ModelError(f"{str(path)!r} is not a safetensors file (unreadable header)") from exc
    metadata = header.pop("__metadata__", None) or {}
    shapes: dict[str, tuple[int, ...]] = {}
    dtypes: dict[str, str] = {}
    for name, info in header.items():
        if isinstance(info, dict):
            shapes[name] = tuple(int(n) for n in info.get("shape", ()))
            dtypes[name] = str(info.get("dtype", ""))
    return Header(shapes, dtypes,
                  {str(k): str(v) for k, v in metadata.items()} if isinstance(metadata, dict) else {})
