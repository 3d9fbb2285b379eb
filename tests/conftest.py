"""Shared fixtures: a settings object per test (own SQLite file and output folder) and one
built-in tiny model per test session."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import pytest

# OpenMP threads that wait spin by default: with two test processes (and their workers) on two
# cores, torch's spinning threads starve each other and a 60 ms render takes seconds. Sleeping
# waiters change no pixel. Set before torch is first imported here, and inherited by every
# process the tests start.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from sdfarm.config import Settings  # noqa: E402

pytest_plugins = ["tests.servers"]

#: Fixed so that every test run renders the same low bits (the thread count changes them).
TEST_THREADS = 2

#: Environment variable that sets the factor :func:`deadline` multiplies every wait by.
TIME_FACTOR_ENV = "SDFARM_TEST_TIME_FACTOR"


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@functools.cache
def time_factor() -> float:
    """How much slower than an idle machine this one is, once per test session.

    ``SDFARM_TEST_TIME_FACTOR`` when set (e.g. ``3`` on a slow CI runner); otherwise the
    one-minute load average per CPU this process may use, at least 1: a machine running twice
    as many runnable threads as it has cores gives every wait twice as long. Measured on first
    use, so it is the load of whatever else runs on the machine when the session starts; times
    the share of cores the suite's own parallel test workers take (:func:`_parallel_share`).
    """
    text = os.environ.get(TIME_FACTOR_ENV)
    if text:
        factor = float(text)
        if not factor > 0:
            raise ValueError(f"{TIME_FACTOR_ENV}={text}: must be a number > 0")
        return factor
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):  # no load average on this platform
        load = 0.0
    return max(1.0, load / _cpus()) * _parallel_share()


def _parallel_share() -> float:
    """How many times fewer cores each test gets when pytest-xdist runs tests side by side.

    The waits were sized for one test at a time, whose workers may use two cores; with
    ``-n N`` on C cores each test and its processes get about C/N of them.
    """
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    return max(1.0, 2 * workers / _cpus())


def deadline(seconds: float) -> float:
    """``seconds`` (what a wait needs on an idle machine) scaled by :func:`time_factor`.

    Every test that waits (a timeout, a poll's deadline, a sleep that lets something happen or
    shows that nothing does, a duration that must outlast a scheduling delay) goes through
    this, so the suite stays green on a loaded machine instead of being tuned for an idle one.
    """
    return seconds * time_factor()


def pytest_report_header(config) -> str:
    source = TIME_FACTOR_ENV if os.environ.get(TIME_FACTOR_ENV) else "load average per CPU"
    return f"sdfarm: waits scaled by {time_factor():.2f} (from {source})"


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    """A model folder shared by the session, with builtin:tiny built once (lazily, on first use
    of ``tiny_model``)."""
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def tiny_model(model_dir: Path) -> Path:
    from sdfarm.worker.builtin import ensure_builtin

    return ensure_builtin("tiny", model_dir)


@pytest.fixture
def settings(request, tmp_path: Path, model_dir: Path) -> Settings:
    """A test's own SQLite file and output folder. ``@pytest.mark.torch_threads(1)`` on a module
    renders it on one torch thread (recorded on its jobs, as any thread count is)."""
    marker = request.node.get_closest_marker("torch_threads")
    return Settings(
        database_url=f"sqlite:///{tmp_path / 'sdfarm.db'}",
        output_dir=tmp_path / "outputs",
        model_dir=model_dir,
        device="cpu",
        threads=marker.args[0] if marker else TEST_THREADS,
    )


@pytest.fixture
def cli_env(settings: Settings) -> dict[str, str]:
    """Environment for running ``sdfarm`` as a subprocess against ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SDFARM_")}
    env.update(SDFARM_DATABASE_URL=settings.database_url, SDFARM_OUTPUT_DIR=str(settings.output_dir),
               SDFARM_MODEL_DIR=str(settings.model_dir), SDFARM_DEVICE="cpu",
               SDFARM_THREADS=str(settings.threads))
    return env


def write_job(folder: Path, body: str, name: str = "job.toml") -> Path:
    path = folder / name
    path.write_text(body, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def one_torch_thread():
    """Torch on one thread for a module of tiny-model renders: their ops are too small to gain
    from threads, and on a busy 2-core machine OpenMP threads waiting on each other make a
    60 ms render take seconds."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def pixels(path):
    """An image file's pixels as an RGB array (what tests compare renders by)."""
    import numpy as np
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))

