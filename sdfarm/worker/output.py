"""Writing one PNG: atomically (temp file + rename), with its parameters embedded."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

from PIL import Image
from PIL.PngImagePlugin import PngInfo

from sdfarm.errors import DiskFault
from sdfarm.files import disk_fault, write_atomic
from sdfarm.metadata.a1111 import PARAMETERS_CHUNK, SDFARM_CHUNK


def write_png(image: Image.Image, path: Path, *, parameters: str, sdfarm_json: str) -> str:
    """Write ``image`` to ``path`` with its text chunks; returns the file's sha256.

    A crash mid-write leaves a stray temp file, never a truncated PNG under the real name, so
    "file exists" keeps meaning "image done" for resume. An error of the disk itself (full,
    read-only, ...) is raised as :class:`DiskFault`: no job is at fault for it.
    """
    info = PngInfo()
    info.add_text(PARAMETERS_CHUNK, parameters)
    info.add_itxt(SDFARM_CHUNK, sdfarm_json)
    buf = io.BytesIO()
    image.save(buf, format="PNG", pnginfo=info)
    data = buf.getvalue()
    try:
        write_atomic(path, data, durable=True)
    except OSError as exc:
        name = disk_fault(exc)
        if name is None:
            raise
        raise DiskFault(str(path.parent), name, exc.strerror or str(exc), needed=len(data)) from exc
    return hashlib.sha256(data).hexdigest()


def max_pixel_difference(a: Path, b: Path) -> int:
    """Largest per-channel difference between two images (0 = identical pixels)."""
    import numpy as np

    with Image.open(a) as ia, Image.open(b) as ib:
        if ia.size != ib.size:
            return 255
        x = np.asarray(ia.convert("RGB"), dtype=np.int16)
        y = np.asarray(ib.convert("RGB"), dtype=np.int16)
    return int(np.abs(x - y).max())
