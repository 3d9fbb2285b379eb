"""Files that appear whole or not at all: every file sdfarm writes (images, grids, the hash
cache) goes to a temporary name beside its destination and is renamed into place, so a crash
mid-write never leaves a truncated file under the real name ("file exists" means "done").

A temporary file is removed on any error; one left by a process killed mid-write is named
after its destination and its owner (pid and host), so the next writer of that folder knows it
for stale and removes it (:func:`remove_stale_temporaries`).
Pure: the standard library only."""

from __future__ import annotations

import errno
import os
import re
import shutil
import socket
import time
from pathlib import Path

from sdfarm.processes import pid_alive

#: The errors of the machine's disk rather than of what is written: a job that meets one is
#: not at fault, and the next write there fails the same way until someone frees the disk.
DISK_FAULTS = {errno.ENOSPC: "ENOSPC", errno.EDQUOT: "EDQUOT", errno.EROFS: "EROFS",
               errno.EIO: "EIO"}

#: A temporary file older than this is stale whoever owns it: a write takes seconds at most,
#: and a temporary file of another host cannot be checked against its process table.
STALE_TEMP_SECONDS = 3600.0

_TEMP = re.compile(r"^\.(?P<dest>.+)\.(?P<pid>\d+)@(?P<host>[^@/]*)\.tmp$")
_LEGACY_TEMP = re.compile(r"^\..+\.\d+\.tmp$")  # before the owner's host was in the name




def _host() -> str:
    return re.sub(r"[^A-Za-z0-9.-]", "-", socket.gethostname())[:64]


def disk_fault(exc: BaseException) -> str | None:
    """The errno name when ``exc`` is an error of the disk itself (:data:`DISK_FAULTS`)."""
    if isinstance(exc, OSError) and exc.errno in DISK_FAULTS:
        return DISK_FAULTS[exc.errno]
    return None


def _temporary(dest: Path) -> Path:
    # Beside the destination (a rename never crosses file systems), hidden, unique per process.
    return dest.with_name(f".{dest.name}.{os.getpid()}@{_host()}.tmp")


def is_temporary(path: Path) -> bool:
    """Whether ``path`` is the name of a temporary file of :func:`write_atomic`."""
    return bool(_TEMP.match(path.name) or _LEGACY_TEMP.match(path.name))


def remove_stale_temporaries(folder: Path, *, now: float | None = None) -> list[Path]:
    """Remove the temporary files in ``folder`` that no write will finish: those of a process
    of this host that is gone, and any older than :data:`STALE_TEMP_SECONDS`. Returns them."""
    now = time.time() if now is None else now
    host, removed = _host(), []
    try:
        entries = list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return removed
    for entry in entries:
        if not entry.name.endswith(".tmp") or not entry.name.startswith("."):
            continue
        match = _TEMP.match(entry.name)
        if match is None and not _LEGACY_TEMP.match(entry.name):
            continue
        try:
            old = now - entry.stat(follow_symlinks=False).st_mtime > STALE_TEMP_SECONDS
        except FileNotFoundError:  # its writer renamed or removed it meanwhile
            continue
        orphan = (match is not None and match["host"] == host
                  and int(match["pid"]) != os.getpid() and not pid_alive(int(match["pid"])))
        if old or orphan:
            try:
                os.unlink(entry.path)
            except FileNotFoundError:
                continue
            removed.append(Path(entry.path))
    return removed


def _fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (the file's own fsync does not cover its name)."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:  # a platform or file system that cannot open folders
        return
    try:
        os.fsync(fd)
    except OSError as exc:
        if disk_fault(exc):
            raise
        # EINVAL and the like: a file system without folder syncs has nothing to flush.
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes, *, durable: bool = False, mode: int | None = None) -> None:
    """Write ``data`` to ``path`` through a temporary file. ``durable`` flushes it and its name
    to the disk (an image a database row will say is done); ``mode`` sets permissions."""
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
    if durable:
        _fsync_folder(path.parent)


def probe_write(folder: Path, size: int) -> None:
    """Write ``size`` bytes in ``folder`` (or its nearest existing parent) to the disk and
    remove them again: raises the ``OSError`` a write there meets now, else returns."""
    while not folder.is_dir() and folder.parent != folder:
        folder = folder.parent
    tmp = _temporary(folder / ".sdfarm-probe")
    try:
        with open(tmp, "wb") as fh:
            chunk = b"\0" * min(size, 1 << 20)
            left = size
            while left > 0:
                left -= fh.write(chunk[:left])
            fh.flush()
            os.fsync(fh.fileno())
    finally:
        tmp.unlink(missing_ok=True)


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
        tmp.unlink(missing_ok=True)
        return None
    except BaseException:  # a full disk mid-copy: no half file left beside the image
        tmp.unlink(missing_ok=True)
        raise
    return dest
