"""The ``sdfarm`` command as a user runs it: a subprocess, a fresh process every time."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from sdfarm.cli.main import cli
from tests.conftest import deadline, write_job

REPO = Path(__file__).resolve().parents[2]


def sdfarm(env, *args, cwd=None, check=True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "sdfarm.cli", *map(str, args)], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=deadline(300))
    if check and proc.returncode != 0:
        raise AssertionError(f"sdfarm {' '.join(map(str, args))} failed:\n{proc.stderr}")
    return proc


def run(env, *args) -> str:
    """``sdfarm`` in this process (fast: torch and the pipeline stay loaded); returns stdout."""
    result = CliRunner().invoke(cli, [str(a) for a in args], env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


def db_rows(settings, sql: str) -> list[tuple]:
    path = settings.database_url.removeprefix("sqlite:///")
    if not Path(path).exists():
        return []
    with sqlite3.connect(path) as conn:
        try:
            return conn.execute(sql).fetchall()
        except sqlite3.OperationalError:  # no tables: nothing was recorded
            return []


def pixels(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.int16)


def test_the_example_seed_sweep_renders_from_a_clean_checkout(settings, cli_env, tiny_model, tmp_path):
    shutil.copytree(REPO / "examples", tmp_path / "examples")
    out = sdfarm(cli_env, "render", "examples/seed-sweep.toml", "--quiet", cwd=tmp_path)
    folder = Path(out.stdout.strip().splitlines()[-1])
    assert folder.parent == settings.output_dir
    pngs = sorted(folder.glob("*.png"))
    assert len(pngs) == 8
    rows = db_rows(settings, "SELECT status, output_path, seed FROM jobs ORDER BY seq")
    assert [r[0] for r in rows] == ["done"] * 8
    assert sorted(Path(r[1]) for r in rows) == pngs
    assert [r[2] for r in rows] == list(range(1000, 1008))


def test_the_same_job_in_two_fresh_processes_gives_identical_pixels(settings, cli_env, tiny_model, tmp_path):
    job = write_job(tmp_path, 'model = "builtin:tiny"\nprompt = "a red fox"\nsteps = 6\n'
                              'width = 64\nheight = 64\nseeds = [77]\nsampler = "Euler a"\n')
    first = Path(sdfarm(cli_env, "render", job, "-q").stdout.strip()) / "00000-77.png"
    second_env = dict(cli_env, SDFARM_DATABASE_URL=f"sqlite:///{tmp_path / 'other.db'}",
                      SDFARM_OUTPUT_DIR=str(tmp_path / "other"))
    second = Path(sdfarm(second_env, "render", job, "-q").stdout.strip()) / "00000-77.png"
    assert first != second
    assert np.array_equal(pixels(first), pixels(second))


def test_rerun_rebuilds_the_original_batch_and_reports_identical_pixels(settings, cli_env, tiny_model, tmp_path):
    job = write_job(tmp_path, 'model = "builtin:tiny"\nprompt = "a boat"\nsteps = 5\nwidth = 64\n'
                              'height = 64\nseeds = [1, 2, 3]\nbatch_size = 3\n')
    run(cli_env, "render", job, "-q")
    result = CliRunner().invoke(cli, ["rerun", "2"], env=cli_env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "shared a forward pass of 3 images" in result.stderr
    assert "identical: every pixel matches the original" in result.stdout
    rerun = db_rows(settings, "SELECT kind, rerun_of_job_id FROM sweeps WHERE id = 2")
    assert rerun == [("rerun", 2)]


def test_show_prints_every_recorded_field(settings, cli_env, tiny_model, tmp_path):
    job = write_job(tmp_path, 'model = "builtin:tiny"\nprompt = "a tree"\nsteps = 3\nwidth = 64\n'
                              'height = 64\nseeds = [9]\n')
    run(cli_env, "render", job, "-q")
    fields = json.loads(run(cli_env, "show", 1, "--json"))
    assert fields["prompt"] == "a tree" and fields["seed"] == 9 and fields["status"] == "done"
    assert fields["file_exists"] is True and len(fields["model_hash"]) == 10
    Path(fields["output_path"]).unlink()
    text = run(cli_env, "show", 1)
    assert "(MISSING)" in text and "a tree" in text
    missing = sdfarm(cli_env, "show", 999, check=False)
    assert missing.returncode == 1 and missing.stderr.strip() == f"Error: no job 999 in {settings.database_url}"


def test_history_filters_by_seed_and_prompt_text(settings, cli_env, tiny_model, tmp_path):
    for prompt, seeds in (("a lighthouse", "[1, 2]"), ("a castle", "[2, 3]")):
        write_job(tmp_path, f'model = "builtin:tiny"\nprompt = "{prompt}"\nsteps = 2\nwidth = 64\n'
                            f'height = 64\nseeds = {seeds}\n', "j.toml")
        run(cli_env, "render", tmp_path / "j.toml", "-q")
    by_seed = json.loads(run(cli_env, "history", "--seed", 2, "--json"))
    assert sorted(r["prompt"] for r in by_seed) == ["a castle", "a lighthouse"]
    by_text = json.loads(run(cli_env, "history", "--prompt", "light*", "--json"))
    assert {r["seed"] for r in by_text} == {1, 2}


@pytest.mark.parametrize("body, expected", [
    ('model = "builtin:tiny"\n', "job.toml: prompt: is required"),
    ('model = "builtin:tiny"\nprompt = "x"\nsteps = -1\n', "job.toml: steps: must be an integer from 1 to 1000, got -1"),
    ('model = "builtin:tiny"\nprompt = "x"\nsampler = "Euler z"\n', "job.toml: sampler: unknown sampler 'Euler z'"),
    ('model = "builtin:tiny"\nprompt = "x"\nseeds = "10-1"\n', "job.toml: seeds: range '10-1' goes down"),
    ('model = "builtin:tiny"\nprompt = 5\n', "job.toml: prompt: must be a string, got an integer 5"),
    ('model = "builtin:tiny"\nprompt = "x"\ncolor = "red"\n', "job.toml: color: unknown key"),
    ('model = "builtin:tiny"\nprompt = "x\n', "job.toml: invalid TOML"),
    ('model = "builtin:huge"\nprompt = "x"\n', "job.toml: model: "),
    ('model = "./weights.ckpt"\nprompt = "x"\n', "job.toml: model: "),
])
def test_a_bad_job_file_gives_one_error_line_and_records_nothing(settings, cli_env, tmp_path, body, expected):
    job = write_job(tmp_path, body)
    if "ckpt" in body:
        (tmp_path / "weights.ckpt").write_bytes(b"not really a checkpoint")
    for command in ("render", "plan"):
        proc = sdfarm(cli_env, command, job, check=False)
        assert proc.returncode == 1
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1, proc.stderr
        assert lines[0].startswith("Error: ") and expected in lines[0], lines[0]
        assert "Traceback" not in proc.stderr
    assert db_rows(settings, "SELECT count(*) FROM sweeps") in ([], [(0,)])
    assert db_rows(settings, "SELECT count(*) FROM jobs") in ([], [(0,)])


def test_rerun_of_a_resumed_cell_rebuilds_the_pass_that_first_rendered_its_image(settings, cli_env, tiny_model, tmp_path):
    body = ('model = "builtin:tiny"\nprompt = "a boat"\nsteps = 5\nwidth = 64\nheight = 64\n'
            'seeds = [1, 2, 3]\nbatch_size = 3\n')
    run(cli_env, "render", write_job(tmp_path, body), "-q")
    # The same cells again: all three are reused from sweep 1, not rendered.
    run(cli_env, "render", write_job(tmp_path, body, "again.toml"), "-q")
    assert db_rows(settings, "SELECT reused_from_job_id FROM jobs WHERE id = 5") == [(2,)]
    result = CliRunner().invoke(cli, ["rerun", "5"], env=cli_env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "shared a forward pass of 3 images" in result.stderr
    assert "identical: every pixel matches the original" in result.stdout


def test_worker_gpu_on_a_machine_without_one_names_the_gpu_option(cli_env):
    # (This machine has no GPU; on one that has GPU 0 the worker would start instead.)
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    env = {k: v for k, v in cli_env.items() if k != "SDFARM_DEVICE"}  # as a user leaves it
    result = sdfarm(env, "worker", "--gpu", "0", check=False)
    assert result.returncode == 1
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("Error: --gpu 0: torch sees no CUDA GPU 0 here") and "SDFARM_DEVICE" not in line


def test_show_of_a_failed_job_prints_its_whole_error_and_the_traceback_only_when_asked(
        cli_env, tmp_path):
    """The advice at the end of a long error is not cut off, and `show` is for users: the
    traceback recorded with it is behind --traceback."""
    (tmp_path / "broken.ckpt").write_bytes(b"not a pickle at all")
    job = write_job(tmp_path, 'name = "broken"\nmodel = "broken.ckpt"\nallow_pickle = true\n'
                    'family = "sd1"\nprompt = "a cat"\nseeds = [1]\nsteps = 2\n'
                    'width = 64\nheight = 64\n')
    rendered = CliRunner().invoke(cli, ["render", "-q", str(job)], env=cli_env)
    assert rendered.exit_code == 1 and "see `sdfarm show 1`" in rendered.stderr
    assert rendered.stdout == ""  # no folder was made: none is printed

    shown = run(cli_env, "show", "1")
    error = next(line for line in shown.splitlines() if line.startswith("error"))
    assert "was refused" in error and error.rstrip().endswith(
        "Convert it to .safetensors on a machine you trust  (`--traceback` shows where it was raised)")
    assert "Traceback" not in shown
    assert "Traceback (most recent call last):" in run(cli_env, "show", "1", "--traceback")
    as_json = json.loads(run(cli_env, "show", "1", "--json"))
    assert as_json["error"].startswith("ModelError: pickle checkpoint") and "traceback" not in as_json
