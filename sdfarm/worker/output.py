"""Writing one PNG: atomically (temp file + rename), with its parameters embedded."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

from PIL import Image
from PIL.PngImagePlugin import PngInfo

from sdfarm.pngmeta import PARAMETERS_CHUNK, SDFARM_CHUNK


def write_png(image: Image.Image, path: Path, *, parameters: str, sdfarm_json: str) -> str:
    """Write ``image`` to ``path`` with its text chunks; returns the file's sha256.

    A crash mid-write leaves a stray temp file, never a truncated PNG under the real name, so
    "file exists" keeps meaning "image done" for resume.
    """
    info = PngInfo()
    info.add_text(PARAMETERS_CHUNK, parameters)
    info.add_itxt(SDFARM_CHUNK, sdfarm_json)
    buf = io.BytesIO()
    image.save(buf, format="PNG", pnginfo=info)
    data = buf.getvalue()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return hashlib.sha256(data).hexdigest()


def read_text_chunks(path: Path) -> dict[str, str]:
    with Image.open(path) as im:
        im.load()
        return {k: v for k, v in im.text.items() if isinstance(v, str)}


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def max_pixel_difference(a: Path, b: Path) -> int:
    """Largest per-channel difference between two images (0 = identical pixels)."""
    import numpy as np

    with Image.open(a) as ia, Image.open(b) as ib:
        if ia.size != ib.size:
            return 255
        x = np.asarray(ia.convert("RGB"), dtype=np.int16)
        y = np.asarray(ib.convert("RGB"), dtype=np.int16)
    return int(np.abs(x - y).max())
