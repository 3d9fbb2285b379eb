"""Job files no one writes by hand, as a fuzzer (or a broken generator) does: each is one
error line naming the file, never a traceback, and never a line that echoes a huge value."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from sdfarm.cli.main import cli
from sdfarm.errors import clip_echoes

BASE = 'model = "builtin:tiny"\nprompt = "a cat"\n'


@pytest.mark.parametrize("name, text, words", [
    ("nested-arrays", BASE + "x = " + "[" * 500 + "]" * 500 + "\n", "nested too deeply"),
    ("nested-tables", BASE + "x = " + "{a = " * 600 + "1" + "}" * 600 + "\n", "nested too deeply"),
    ("nul-in-model", 'model = "models/a\\u0000b"\nprompt = "a"\n', "contains a NUL character"),
    ("long-model", 'model = "' + "a" * 5000 + '.safetensors"\nprompt = "a"\n', "File name too long"),
    ("huge-value", BASE + 'sampler = "' + "x" * 100_000 + '"\n', "(100,000 characters)"),
])
def test_a_hostile_job_file_is_one_short_error_line(tmp_path, name, text, words):
    path = tmp_path / f"{name}.toml"
    path.write_text(text, encoding="utf-8")
    env = {"SDFARM_DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite'}",
           "SDFARM_MODEL_DIR": str(tmp_path / "models")}
    result = CliRunner().invoke(cli, ["plan", str(path)], env=env)
    # (a traceback would leave its exception here instead of click's SystemExit)
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.exception
    [line] = result.output.strip().splitlines()
    assert line.startswith(f"Error: {path}: ") and words in line, line
    assert len(line) < 600


def test_only_long_quoted_values_are_cut_and_their_length_is_said():
    short = "model 'tiny' is fine"
    assert clip_echoes(short) == short
    cut = clip_echoes(f"unknown sampler '{'x' * 200}'; known: Euler")
    assert cut == f"unknown sampler '{'x' * 79}…' (200 characters); known: Euler"


def test_a_long_path_keeps_its_file_name_when_cut():
    path = "/tmp/" + "deep/" * 40 + "odd.safetensors"
    cut = clip_echoes(f"model '{path}' is an SDXL refiner checkpoint")
    assert "odd.safetensors' (" in cut and cut.startswith("model '/tmp/deep/")
    assert len(cut) < 140 and f"({len(path):,} characters)" in cut


def test_the_end_of_one_quoted_value_and_the_start_of_the_next_are_not_one_value():
    message = ("'yesterday' is not a time ago like 7d, 12h, 30m, 2w or a UTC date like "
               "2026-11-01 or 2026-11-01T18:30 (see 'sdfarm history --help')")
    assert clip_echoes(message) == message


@pytest.mark.parametrize("args", [["bogus"], ["--bogus"], ["render", "."],
                                  ["history", "--cfg", "8-4"], ["prune"]])
def test_a_usage_error_is_one_line_with_exit_status_1(tmp_path, args):
    env = {"SDFARM_DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite'}"}
    result = CliRunner().invoke(cli, args, env=env)
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    [line] = result.output.strip().splitlines()
    assert line.startswith("Error: ") and "--help')" in line, line
