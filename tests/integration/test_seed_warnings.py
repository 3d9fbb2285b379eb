"""Duplicate seeds in a job file: one warning on stderr where the file is read (plan, render,
submit all go through ``load_plan``), and each seed rendered once (issue 13, item 13)."""

from __future__ import annotations

from click.testing import CliRunner

from sdfarm.cli.main import cli
from tests.conftest import write_job


def test_plan_warns_once_about_duplicate_seeds_and_counts_each_seed_once(cli_env, tmp_path):
    path = write_job(tmp_path, 'model = "builtin:tiny"\nprompt = "a cat"\nseeds = "1-3, 2-4"\n')
    result = CliRunner().invoke(cli, ["plan", str(path)], env=cli_env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == [
        f"Warning: {path}: seeds: 2 appears twice, 3 appears twice; duplicates render the same "
        "image, so each seed is rendered once (4 seeds, not 6)"]
    assert "images:          4 (1 prompt x 4 seeds)" in result.stdout
    assert "Warning" not in result.stdout  # `plan --json` stays parseable


def test_seeds_written_once_give_no_warning(cli_env, tmp_path):
    path = write_job(tmp_path, 'model = "builtin:tiny"\nprompt = "a cat"\nseeds = [1, 2]\n')
    result = CliRunner().invoke(cli, ["plan", str(path)], env=cli_env, catch_exceptions=False)
    assert result.exit_code == 0 and result.stderr == ""
