"""Thumbnails: a ~256 px WebP of each image, made on its first request and kept.

They live in a folder beside the output folder, ``<output_dir>.thumbs/`` (so ``sdfarm index``
of the output folder never meets them, and deleting them loses nothing), one file per job:
``<output_dir>.thumbs/<job_id // 1000>/<job_id>.webp``. Written to a temporary name and renamed,
so a request never reads half a thumbnail; made again when the image is newer than it.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

#: Longest side of a thumbnail, in pixels.
THUMB_SIZE = 256
WEBP_QUALITY = 80


def thumbs_folder(output_dir: Path) -> Path:
    output_dir = Path(output_dir)
    return output_dir.with_name(output_dir.name + ".thumbs")


def thumb_path(output_dir: Path, job_id: int) -> Path:
    return thumbs_folder(output_dir) / str(job_id // 1000) / f"{job_id}.webp"


def thumbnail(image: Path, output_dir: Path, job_id: int) -> Path:
    """The thumbnail of ``image`` (job ``job_id``): the cached one when it is at least as new
    as the image, else made now. Blocking (Pillow): call it from a worker thread."""
    thumb = thumb_path(output_dir, job_id)
    try:
        if thumb.stat().st_mtime_ns >= image.stat().st_mtime_ns:
            return thumb
    except FileNotFoundError:
        pass
    _make(image, thumb)
    return thumb


def _make(image: Path, thumb: Path) -> None:
    from PIL import Image

    thumb.parent.mkdir(parents=True, exist_ok=True)
    with Image.open(image) as im:
        im.draft("RGB", (THUMB_SIZE, THUMB_SIZE))  # a JPEG decodes at a fraction of its size
        im.thumbnail((THUMB_SIZE, THUMB_SIZE), Image.Resampling.LANCZOS)
        if im.mode not in ("RGB", "RGBA"):
            im = im.convert("RGBA" if "A" in im.getbands() or "transparency" in im.info
                            else "RGB")
        fd, tmp = tempfile.mkstemp(prefix=f".{thumb.stem}.", suffix=".tmp", dir=thumb.parent)
        try:
            with os.fdopen(fd, "wb") as out:
                im.save(out, "WEBP", quality=WEBP_QUALITY, method=4)
            os.replace(tmp, thumb)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
