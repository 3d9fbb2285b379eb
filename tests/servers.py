"""Real servers for the tests that need them: redis-server and PostgreSQL, started on free
ports in temporary folders and stopped afterwards.

Without the binaries these tests skip on a laptop but FAIL under CI (``CI`` set): `make test`
installs both, so a skip in CI would hide a broken set-up.
"""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.conftest import deadline


def _missing(what: str) -> None:
    message = f"{what} is not installed (`make services` installs it)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(predicate, what: str, timeout: float = 30.0) -> None:
    limit = deadline(timeout)
    end = time.monotonic() + limit
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not start within {limit:.0f} s")


class RedisServer:
    def __init__(self, binary: str) -> None:
        self.port = free_port()
        self.folder = tempfile.mkdtemp(prefix="sdfarm-redis-")
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.folder,
             "--save", "", "--appendonly", "no", "--maxmemory-policy", "noeviction"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait(self.ping, "redis-server")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=deadline(0.5)) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(deadline(10))
        shutil.rmtree(self.folder, ignore_errors=True)


class PostgresServer:
    """A throwaway cluster. PostgreSQL refuses to run as root, so as root it runs as the
    ``postgres`` user (created by Debian's package)."""

    def __init__(self, bindir: Path) -> None:
        self.port = free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="sdfarm-pg-"))
        self.folder.chmod(0o755)
        data = self.folder / "data"
        data.mkdir()
        prefix: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(data, "postgres", "postgres")
            shutil.chown(self.folder, "postgres", "postgres")
            prefix = ["runuser", "-u", "postgres", "--"]
        subprocess.run([*prefix, str(bindir / "initdb"), "-D", str(data), "-A", "trust",
                        "-U", "postgres", "-E", "UTF8", "--no-sync"],
                       check=True, capture_output=True)
        self.process = subprocess.Popen(
            [*prefix, str(bindir / "postgres"), "-D", str(data), "-p", str(self.port),
             "-k", str(self.folder), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off",
             "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
             "-c", "max_connections=200"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait(self._ready, "PostgreSQL")
        self._names = itertools.count(1)

    def _ready(self) -> bool:
        import psycopg

        try:
            psycopg.connect(self.dsn("postgres"), connect_timeout=max(1, round(deadline(1)))).close()
            return True
        except psycopg.OperationalError:
            return False

    def dsn(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        """A fresh empty database; returns its SQLAlchemy URL."""
        import psycopg

        name = f"t{os.getpid()}_{next(self._names)}"
        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(deadline(20))
        shutil.rmtree(self.folder, ignore_errors=True)


def _postgres_bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb else None


@pytest.fixture(scope="session")
def redis_server():
    binary = shutil.which("redis-server")
    if not binary:
        _missing("redis-server")
    server = RedisServer(binary)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres_server():
    bindir = _postgres_bindir()
    if bindir is None:
        _missing("PostgreSQL (initdb/postgres)")
    server = PostgresServer(bindir)
    yield server
    server.stop()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """SQLAlchemy URL of a fresh, empty PostgreSQL database for one test."""
    return postgres_server.create_database()
