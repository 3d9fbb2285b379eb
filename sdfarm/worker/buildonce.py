"""Writing a folder once, whole, however many processes ask for it at the same time.

Built-in models and single-file configs are made on first use, possibly by several workers
starting together: one builds under a lock, in a temporary folder beside the destination,
and renames it into place; the others wait for the lock and find it done. A folder is done
when it has its ``model_index.json``, which every diffusers folder has.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

DONE_MARKER = "model_index.json"


def build_once(dest: Path, build: Callable[[Path], None]) -> Path:
    """``dest``, calling ``build(folder)`` to fill it first when it is not there yet.

    Raises ``OSError`` when the folder cannot be written; what ``build`` raises, unchanged
    (nothing half-built is left under ``dest``'s name either way).
    """
    if (dest / DONE_MARKER).is_file():
        return dest
    parent, name = dest.parent, dest.name
    parent.mkdir(parents=True, exist_ok=True)
    with open(parent / f".{name}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (dest / DONE_MARKER).is_file():  # another process built it while we waited
            return dest
        # Under the lock, so these are from builds that were killed, not running ones.
        for stale in parent.glob(f".{name}-tmp*"):
            shutil.rmtree(stale, ignore_errors=True)
        if dest.exists():  # a folder without its marker: not something we finished
            shutil.rmtree(dest)
        tmp = Path(tempfile.mkdtemp(dir=parent, prefix=f".{name}-tmp"))
        try:
            build(tmp)
            tmp.chmod(0o755)  # mkdtemp makes it private; workers may run as other users
            os.rename(tmp, dest)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return dest
