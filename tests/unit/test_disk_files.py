"""Temporary files: removed on a write error, and those a killed write left (of a process of
this host that is gone, or older than any write) removed by the folder's next writer; disk
faults told apart from a job's own write errors; a paused worker's state as status shows it."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sdfarm.files import (
    STALE_TEMP_SECONDS,
    _host,
    disk_fault,
    is_temporary,
    probe_write,
    remove_stale_temporaries,
    write_atomic,
)
from sdfarm.usecases.status import shown_state


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_stale_temporary_files_are_removed_and_live_ones_kept(tmp_path: Path):
    # Given temporary files of: a process of this host that is gone, a live one (pid 1), a
    # live one of another host, one of another host older than any write, and a legacy name
    dead = tmp_path / f".00001-5.png.{_dead_pid()}@{_host()}.tmp"
    live = tmp_path / f".00002-6.png.1@{_host()}.tmp"
    elsewhere = tmp_path / ".00003-7.png.1234@other-host.tmp"
    old = tmp_path / ".00004-8.png.1234@other-host.tmp"
    legacy_old = tmp_path / ".00005-9.png.4321.tmp"
    image = tmp_path / "00006-10.png"
    for path in (dead, live, elsewhere, old, legacy_old, image):
        path.write_bytes(b"x")
    long_ago = time.time() - STALE_TEMP_SECONDS - 60
    for path in (old, legacy_old):
        os.utime(path, (long_ago, long_ago))
    # When
    removed = remove_stale_temporaries(tmp_path)
    # Then
    assert sorted(removed) == sorted([dead, old, legacy_old])
    assert live.exists() and elsewhere.exists() and image.exists()
    assert all(is_temporary(p) for p in (dead, live, elsewhere, old, legacy_old))
    assert not is_temporary(image)


def test_a_failed_write_leaves_no_temporary_file(tmp_path: Path):
    # Given a folder squatting on the destination: the rename fails after the data is written
    dest = tmp_path / "image.png"
    dest.mkdir()
    # When / Then
    with pytest.raises(OSError):
        write_atomic(dest, b"data", durable=True)
    assert [p.name for p in tmp_path.iterdir()] == ["image.png"]


def test_disk_faults_are_told_apart_from_a_jobs_own_write_errors():
    for code, name in [(errno.ENOSPC, "ENOSPC"), (errno.EDQUOT, "EDQUOT"),
                       (errno.EROFS, "EROFS"), (errno.EIO, "EIO")]:
        assert disk_fault(OSError(code, os.strerror(code))) == name
    assert disk_fault(IsADirectoryError(errno.EISDIR, "Is a directory")) is None
    assert disk_fault(PermissionError(errno.EACCES, "Permission denied")) is None
    assert disk_fault(ValueError("no")) is None


def test_a_probe_writes_in_the_nearest_folder_there_is_and_leaves_nothing(tmp_path: Path):
    probe_write(tmp_path / "sweep-1" / "not-yet", 100_000)
    assert list(tmp_path.iterdir()) == []


def test_a_paused_worker_is_shown_with_its_reason_and_folder():
    assert shown_state("paused:ENOSPC", "/out/sweep-3") == "paused: disk full (/out/sweep-3)"
    assert shown_state("paused:EROFS", None) == "paused: read-only file system"
    assert shown_state("busy", "/out") == "busy"
