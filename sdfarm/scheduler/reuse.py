"""Resume: an image already rendered for the same key joins a new sweep's folder.

It is hard-linked (no copy, no extra space; copied where the file system cannot link), so a
sweep folder always holds all of its images and outlives the folder it borrowed from.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def place_image(existing: Path, dest: Path) -> Path | None:
    """Put ``existing`` at ``dest``; ``None`` when ``existing`` is gone (render it again)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    try:
        try:
            os.link(existing, tmp)
        except FileNotFoundError:
            return None
        except OSError:  # another file system, or one without hard links
            shutil.copyfile(existing, tmp)
        # Through a temporary name, as every image is written: a file under its real name is whole.
        os.replace(tmp, dest)
    except FileNotFoundError:
        return None
    return dest
