"""The init image of an img2img job file, checked and hashed at plan time. Pure.

Its path is relative to the job file; what enters each image's key is the sha256 of its bytes
(``RenderSpec.init_image_hash``), so a moved copy renders the same pixels and an edited file
does not pass for the old one (the worker checks the hash again before rendering).
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

from sdfarm.errors import JobFileError
from sdfarm.scheduler.jobfile import JobFile

#: Leading bytes of the image formats Pillow reads that people feed img2img.
_SIGNATURES = ((b"\x89PNG\r\n\x1a\n", "PNG"), (b"\xff\xd8\xff", "JPEG"), (b"GIF87a", "GIF"),
               (b"GIF89a", "GIF"), (b"BM", "BMP"))
KINDS = "PNG, JPEG, WebP, GIF or BMP"


def image_kind(data: bytes) -> str | None:
    """The format ``data`` starts as, or ``None`` when it is none of :data:`KINDS`."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    return next((kind for magic, kind in _SIGNATURES if data.startswith(magic)), None)


def resolve_init_image(job: JobFile) -> JobFile:
    """``job`` with its init image's absolute path and sha256 in its base spec; a missing or
    unreadable file is a :class:`JobFileError` naming ``init_image``."""
    written = job.base.init_image
    if not written:
        return job
    path = (Path(job.path).parent / Path(written).expanduser()).resolve()
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise JobFileError(job.path, "init_image", f"no such file: {path}") from None
    except OSError as exc:
        raise JobFileError(job.path, "init_image",
                           f"{path} cannot be read: {exc.strerror or exc}") from None
    if image_kind(data) is None:
        raise JobFileError(job.path, "init_image", f"{path} is not a {KINDS} image")
    sha = hashlib.sha256(data).hexdigest()
    return dataclasses.replace(job, base=job.base.replace(init_image=str(path),
                                                          init_image_hash=sha))
