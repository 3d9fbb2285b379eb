"""The whole test suite, twice in a row, while other processes keep every core busy: the
suite's waits must hold on a loaded machine (a busy CI box), not only on an idle one.

    .venv/bin/python bench/suite_under_load.py [--runs 2] [--burners N] [pytest args...]

Starts N busy-looping processes (default: one per core), runs pytest ``--runs`` times (with
``make test``'s ``-n 2 --dist loadfile`` unless pytest args are given), prints each run's
result and wall time, stops the burners. Exit status: the first failing run's.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import subprocess
import sys
import time


def _burn() -> None:
    x = 0
    while True:  # pure Python arithmetic: one core, all the time
        x = (x * 1103515245 + 12345) % 2147483648


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--burners", type=int, default=len(os.sched_getaffinity(0)))
    args, pytest_args = parser.parse_known_args()
    pytest_args = pytest_args or ["-n", "2", "--dist", "loadfile"]  # as `make test` runs it
    burners = [multiprocessing.Process(target=_burn, daemon=True) for _ in range(args.burners)]
    for proc in burners:
        proc.start()
    print(f"{args.burners} burner process(es) keep the cores busy", flush=True)
    status = 0
    try:
        time.sleep(60)  # let the one-minute load average see them (the suite scales its waits by it)
        for run in range(1, args.runs + 1):
            started = time.monotonic()
            result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                                     *pytest_args])
            minutes, seconds = divmod(time.monotonic() - started, 60)
            print(f"run {run}: exit {result.returncode} in {int(minutes)} min {seconds:.0f} s "
                  f"under load", flush=True)
            status = status or result.returncode
    finally:
        for proc in burners:
            proc.kill()
    return status


if __name__ == "__main__":
    sys.exit(main())
