"""Settings come from SDFARM_* environment variables, with zero-config defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from sdfarm.config import Settings
from sdfarm.errors import SdfarmError


def test_defaults_need_no_configuration(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    s = Settings.from_env({"HOME": str(tmp_path)})
    assert s.database_url == f"sqlite:///{tmp_path / 'sdfarm.db'}"
    assert s.output_dir == tmp_path / "outputs"
    assert s.model_dir == tmp_path / ".cache" / "sdfarm" / "models"
    assert (s.device, s.dtype, s.renderer) == ("auto", "auto", "diffusers")
    assert s.threads >= 1


def test_each_variable_overrides_its_setting(tmp_path):
    s = Settings.from_env({
        "SDFARM_DATABASE_URL": "postgresql+psycopg://u@h/db", "SDFARM_OUTPUT_DIR": str(tmp_path / "o"),
        "SDFARM_MODEL_DIR": str(tmp_path / "m"), "SDFARM_DEVICE": "cuda:1", "SDFARM_THREADS": "3",
        "SDFARM_BROKER_URL": "redis://r:6379/2",
    })
    assert s.database_url == "postgresql+psycopg://u@h/db"
    assert (s.output_dir, s.model_dir) == (tmp_path / "o", tmp_path / "m")
    assert (s.device, s.threads, s.broker_url) == ("cuda:1", 3, "redis://r:6379/2")


def test_a_malformed_number_is_an_error_naming_the_variable():
    with pytest.raises(SdfarmError, match="SDFARM_THREADS"):
        Settings.from_env({"SDFARM_THREADS": "many"})


def test_settings_are_hashable_so_a_process_keeps_one_renderer_per_settings():
    assert hash(Settings(output_dir=Path("/x"))) == hash(Settings(output_dir=Path("/x")))


def test_the_time_to_a_first_step_is_bounded_by_default_and_settable():
    assert Settings.from_env({}).first_step_seconds == 600.0
    assert Settings.from_env({"SDFARM_FIRST_STEP_SECONDS": "45"}).first_step_seconds == 45.0
    with pytest.raises(SdfarmError, match=r"SDFARM_FIRST_STEP_SECONDS=0: must be a number >= 0.1"):
        Settings.from_env({"SDFARM_FIRST_STEP_SECONDS": "0"})
