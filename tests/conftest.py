"""Shared fixtures: a settings object per test (own SQLite file and output folder) and one
built-in tiny model per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sdfarm.config import Settings

pytest_plugins = ["tests.servers"]

#: Fixed so that every test run renders the same low bits (the thread count changes them).
TEST_THREADS = 2


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
def settings(tmp_path: Path, model_dir: Path) -> Settings:
    return Settings(
        database_url=f"sqlite:///{tmp_path / 'sdfarm.db'}",
        output_dir=tmp_path / "outputs",
        model_dir=model_dir,
        device="cpu",
        threads=TEST_THREADS,
    )


@pytest.fixture
def cli_env(settings: Settings) -> dict[str, str]:
    """Environment for running ``sdfarm`` as a subprocess against ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SDFARM_")}
    env.update(SDFARM_DATABASE_URL=settings.database_url, SDFARM_OUTPUT_DIR=str(settings.output_dir),
               SDFARM_MODEL_DIR=str(settings.model_dir), SDFARM_DEVICE="cpu",
               SDFARM_THREADS=str(TEST_THREADS))
    return env


def write_job(folder: Path, body: str, name: str = "job.toml") -> Path:
    path = folder / name
    path.write_text(body, encoding="utf-8")
    return path
