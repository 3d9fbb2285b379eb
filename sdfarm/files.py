"""Files that appear whole or not at all: every file sdfarm writes (images, grids, the hash
cache) goes to a temporary name beside its destination and is renamed into place, so a crash
mid-write never leaves a truncated file under the real name ("file exists" means "done").
Pure: the standard library only."""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def _temporary(dest: Path) -> Path:
    # Beside the destination (a rename never crosses file systems), hidden, unique per process.
    return dest.with_name(f".{dest.name}.{os.getpid()}.tmp")


def write_atomic(path: Path, data: bytes, *, durable: bool = False, mode: int | None = None) -> None:
    """Write ``data`` to ``path`` through a temporary file. ``durable`` flushes it to the disk
    before the rename (an image a database row will say is done); ``mode`` sets permissions."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary(path)
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def place_image(existing: Path, dest: Path) -> Path | None:
    """Put ``existing`` at ``dest`` for resume; ``None`` when ``existing`` is gone (render it
    again).

    It is hard-linked (no copy, no extra space; copied where the file system cannot link), so
    a sweep folder always holds all of its images and outlives the folder it borrowed from.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary(dest)
    try:
        try:
            os.link(existing, tmp)
        except FileNotFoundError:
            return None
        except OSError:  # another file system, or one without hard links
            shutil.copyfile(existing, tmp)
        os.replace(tmp, dest)
    except FileNotFoundError:
        return None
    return dest
