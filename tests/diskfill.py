"""A small disk to fill: a 2 MB tmpfs mounted for one test (``mount`` needs root; the tests
that use it skip, saying why, where it is refused), with a filler file that takes all of its
space but what a test leaves, and gives it back on ``free()``."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

#: tmpfs counts space in pages: a file takes whole ones.
PAGE = 4096
SIZE = "2m"


class SmallDisk:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.filler = root / "filler"

    def fill(self, leave_pages: int = 0) -> None:
        """Take every free page, then give ``leave_pages`` of them back."""
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        try:
            chunk = b"\1" * (64 * 1024)
            try:
                while True:
                    os.write(fd, chunk)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
            pages = -(-os.fstat(fd).st_size // PAGE)
            os.ftruncate(fd, max(0, pages - leave_pages) * PAGE)
        finally:
            os.close(fd)

    def free(self) -> None:
        self.filler.unlink()

    def temporaries(self) -> list[Path]:
        """Every temporary file left anywhere on the disk."""
        return sorted(p for p in self.root.rglob("*") if p.name.endswith(".tmp"))


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[SmallDisk]:
    root = tmp_path / "small-disk"
    root.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no `mount` command here to mount a 2 MB tmpfs")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SIZE}", "tmpfs", str(root)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a 2 MB tmpfs (needs root): {done.stderr.strip()}")
    try:
        yield SmallDisk(root)
    finally:
        if subprocess.run(["umount", str(root)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(root)], capture_output=True)  # busy: detach it
