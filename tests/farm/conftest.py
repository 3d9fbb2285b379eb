"""The farm under test: a real redis-server (flushed for each test), real ``sdfarm worker``
subprocesses (always killed at teardown), and the database of ``settings`` (SQLite) or of
``postgres_url``.

Reliability tests use the fake renderer (``SDFARM_RENDERER=fake:SECONDS``) and short leases so
that a dead worker's jobs come back in about a second.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from sdfarm.config import Settings
from sdfarm.db.engine import session_factory
from sdfarm.db.models import FarmWorker, Job, JobStatus
from tests.conftest import TEST_THREADS, deadline

#: Settings of a fast farm: dead workers' leases expire within ~1.5 s (scaled by the machine's
#: load, so that a live but starved worker keeps its lease) and every worker looks for lost work
#: every half second.
FAST_FARM = {
    "SDFARM_LEASE_SECONDS": f"{deadline(1.5):g}",
    "SDFARM_RECOVER_INTERVAL": "0.5",
    "SDFARM_HEARTBEAT_SECONDS": "0.5",
}


def wait_until(predicate: Callable[[], Any], what: str, timeout: float = 60.0,
               farm: Farm | None = None) -> Any:
    """Poll ``predicate`` until it is truthy; ``timeout`` is what an idle machine needs, and
    is scaled by :func:`tests.conftest.deadline`."""
    limit = deadline(timeout)
    end = time.monotonic() + limit
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    logs = farm.logs() if farm else ""
    raise AssertionError(f"timed out after {limit:.0f} s waiting for {what}\n{logs}")


class Farm:
    """Workers as subprocesses of ``sdfarm worker``, and the database they share."""

    def __init__(self, settings: Settings, env: dict[str, str], folder: Path) -> None:
        self.settings = settings
        self.env = env
        self.folder = folder
        self.workers: dict[str, subprocess.Popen] = {}
        self._restarts: dict[str, int] = {}
        self._keeper: threading.Thread | None = None
        self._keeping = threading.Event()

    # --- processes -------------------------------------------------------------------------
    def start_worker(self, name: str, *, wait: bool = True, **env: str) -> subprocess.Popen:
        log = open(self.folder / f"{name}.log", "ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", "sdfarm.cli", "worker", "--name", name, "--loglevel", "info"],
            env={**self.env, **env}, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self.workers[name] = proc
        if wait:
            self.wait_registered(name, proc.pid)
        return proc

    def wait_registered(self, name: str, pid: int) -> None:
        def registered() -> bool:
            if self.workers[name].poll() is not None:
                raise AssertionError(f"worker {name} exited at start:\n{self.logs()}")
            with self.session() as s:
                row = s.get(FarmWorker, name)
                return row is not None and row.pid == pid
        wait_until(registered, f"worker {name} to register", farm=self)

    def wait_ready(self, name: str) -> None:
        """Until Celery consumes (and so handles SIGTERM as a warm shutdown)."""
        log = self.folder / f"{name}.log"
        wait_until(lambda: f"{name} ready." in log.read_text(errors="replace"),
                   f"worker {name} to consume", farm=self)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        proc = self.workers[name]
        if proc.poll() is None:
            proc.send_signal(sig)
            proc.wait(deadline(30))

    def keep_alive(self, *names: str, **env: str) -> None:
        """Restart these workers whenever they die, as a supervisor (systemd, docker's
        ``restart: always``) would."""
        for name in names:
            if name not in self.workers:
                self.start_worker(name, wait=False, **env)

        def keeper() -> None:
            while not self._keeping.wait(0.2):
                for name in names:
                    if self.workers[name].poll() is not None:
                        self._restarts[name] = self._restarts.get(name, 0) + 1
                        self.start_worker(name, wait=False, **env)

        self._keeper = threading.Thread(target=keeper, daemon=True)
        self._keeper.start()

    def restarts(self, name: str) -> int:
        return self._restarts.get(name, 0)

    def stop_all(self) -> None:
        self._keeping.set()
        if self._keeper is not None:
            self._keeper.join(deadline(5))
        for proc in self.workers.values():
            if proc.poll() is None:
                proc.kill()
        for proc in self.workers.values():
            try:
                proc.wait(deadline(10))
            except subprocess.TimeoutExpired:
                pass

    def logs(self) -> str:
        out = []
        for path in sorted(self.folder.glob("*.log")):
            text = path.read_text(errors="replace")
            out.append(f"--- {path.name} (last 3000 chars)\n{text[-3000:]}")
        return "\n".join(out)

    # --- the CLI and the database ------------------------------------------------------------
    def sdfarm(self, *args: object, check: bool = True, timeout: float = 120.0,
               **env: str) -> subprocess.CompletedProcess:
        """``sdfarm ARGS`` as a subprocess; ``timeout`` as in :func:`wait_until`."""
        proc = subprocess.run([sys.executable, "-m", "sdfarm.cli", *map(str, args)],
                              env={**self.env, **env}, capture_output=True, text=True,
                              timeout=deadline(timeout))
        if check and proc.returncode != 0:
            raise AssertionError(f"sdfarm {' '.join(map(str, args))} failed:\n{proc.stderr}")
        return proc

    def session(self):
        return session_factory(self.settings.database_url)()

    def jobs(self, sweep_id: int) -> list[Job]:
        with self.session() as s:
            return list(s.scalars(select(Job).where(Job.sweep_id == sweep_id).order_by(Job.seq)))

    def statuses(self, sweep_id: int) -> dict[str, int]:
        counts: dict[str, int] = {}
        for job in self.jobs(sweep_id):
            counts[job.status.value] = counts.get(job.status.value, 0) + 1
        return counts

    def wait_finished(self, sweep_id: int, timeout: float = 60.0) -> list[Job]:
        def finished() -> list[Job] | None:
            jobs = self.jobs(sweep_id)
            return jobs if jobs and all(j.status.finished for j in jobs) else None
        return wait_until(finished, f"sweep {sweep_id} to finish", timeout, farm=self)

    def running_on(self, worker: str) -> list[Job]:
        with self.session() as s:
            return list(s.scalars(select(Job).where(Job.worker == worker,
                                                    Job.status == JobStatus.running)))


def flush_redis(url: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    try:
        client.flushall()
    finally:
        client.close()


@pytest.fixture
def broker_url(redis_server) -> str:
    flush_redis(redis_server.url)
    return redis_server.url


def farm_env(settings: Settings, broker_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SDFARM_")}
    env.update(SDFARM_DATABASE_URL=settings.database_url, SDFARM_OUTPUT_DIR=str(settings.output_dir),
               SDFARM_MODEL_DIR=str(settings.model_dir), SDFARM_DEVICE="cpu",
               SDFARM_THREADS=str(TEST_THREADS), SDFARM_BROKER_URL=broker_url,
               SDFARM_RENDERER="fake:0.02", **FAST_FARM)
    env.update(extra)
    return env


@pytest.fixture
def make_farm(settings: Settings, broker_url: str, tmp_path: Path) -> Iterator[Callable[..., Farm]]:
    """``make_farm(database_url=None, **env)``: a farm on ``settings``' SQLite file (or the
    given database), with extra SDFARM_* variables for its workers and commands."""
    farms: list[Farm] = []

    def make(database_url: str | None = None, **env: str) -> Farm:
        s = settings.with_(database_url=database_url) if database_url else settings
        merged = farm_env(s, broker_url, **env)
        s = Settings.from_env(merged)
        folder = tmp_path / f"farm{len(farms)}"
        folder.mkdir()
        farm = Farm(s, merged, folder)
        farms.append(farm)
        return farm

    yield make
    for farm in farms:
        farm.stop_all()


@pytest.fixture
def farm(make_farm) -> Farm:
    return make_farm()
