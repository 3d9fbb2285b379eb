"""Whether a process of this machine is alive: the process table knows better than any
heartbeat whether a worker or a local render on this host is gone."""

from __future__ import annotations

import os


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True
