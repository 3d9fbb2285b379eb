"""Resume: a cell whose key already has a done image on disk is reused, not rendered again; an
interrupted render finishes only what is missing; --force renders everything."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from click.testing import CliRunner
from PIL import Image
from sqlalchemy import select

from sdfarm.cli.main import cli
from sdfarm.db.engine import session_factory
from sdfarm.db.models import Job, JobStatus, Sweep
from sdfarm.files import place_image
from sdfarm.scheduler.jobfile import parse_job_file
from sdfarm.scheduler.plan import make_plan
from sdfarm.usecases.local import render_sweep_locally
from sdfarm.usecases.record import record
from sdfarm.usecases.render import load_plan
from tests.conftest import deadline, write_job

GRID = """
name = "grid"
model = "builtin:tiny"
prompt = "a lighthouse at dusk"
width = 64
height = 64
seeds = [1000]
[axes]
x = {{ cfg = {cfg} }}
y = {{ steps = [2, 3, 4] }}
"""


def grid_file(tmp_path, cfg="[4, 6, 8, 10]", name="grid.toml") -> Path:
    return write_job(tmp_path, GRID.format(cfg=cfg), name)


def jobs_of(settings, sweep_id) -> list[Job]:
    with session_factory(settings.database_url)() as s:
        return list(s.scalars(select(Job).where(Job.sweep_id == sweep_id).order_by(Job.seq)))


def render(settings, path, **kw) -> tuple[int, object]:
    sweep_id = record(settings, load_plan(settings, path), **kw)
    return sweep_id, render_sweep_locally(settings, sweep_id)


def pixels(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def test_after_deleting_three_images_of_a_12_cell_grid_rendering_again_renders_exactly_three(
        settings, tiny_model, tmp_path):
    first_id, first = render(settings, grid_file(tmp_path))
    assert first.done == 12
    originals = jobs_of(settings, first_id)
    deleted = originals[2], originals[5], originals[11]
    kept_pixels = {j.key: pixels(j.output_path) for j in deleted}
    for job in deleted:
        Path(job.output_path).unlink()

    second_id, second = render(settings, grid_file(tmp_path))

    assert second.done == 3
    jobs = jobs_of(settings, second_id)
    assert all(j.status == JobStatus.done for j in jobs)
    rendered = [j for j in jobs if j.reused_from_job_id is None]
    assert sorted(j.key for j in rendered) == sorted(j.key for j in deleted)
    for job in rendered:
        assert np.array_equal(pixels(job.output_path), kept_pixels[job.key]), "same key, same pixels"
    by_key = {j.key: j for j in originals}
    for job in jobs:
        if job.reused_from_job_id is not None:
            source = by_key[job.key]
            assert job.reused_from_job_id == source.id and job.sha256 == source.sha256
            # Hard-linked into the new sweep's folder: the same file, no copy.
            assert Path(job.output_path).parent.name == f"grid-{second_id}"
            assert os.path.samefile(job.output_path, source.output_path)
            assert job.render_seconds is None and job.batch_index == -1


def test_an_overlapping_grid_reuses_the_shared_cells_and_renders_the_rest(settings, tiny_model, tmp_path):
    render(settings, grid_file(tmp_path, cfg="[4, 6, 8, 10]"))
    sweep_id, result = render(settings, grid_file(tmp_path, cfg="[8, 10, 12, 14]", name="wider.toml"))
    jobs = jobs_of(settings, sweep_id)
    reused = [j for j in jobs if j.reused_from_job_id is not None]
    assert result.done == 6 and len(reused) == 6
    assert {j.cfg for j in reused} == {8.0, 10.0}
    # Grid coordinates belong to the new sweep: cfg 8 is its first column.
    assert {j.grid_x for j in reused} == {0, 1}


def test_force_renders_every_image_again_and_a_rerun_never_reuses(settings, tiny_model, tmp_path):
    path = grid_file(tmp_path, cfg="[5]")
    render(settings, path)
    sweep_id, result = render(settings, path, force=True)
    assert result.done == 3
    assert all(j.reused_from_job_id is None for j in jobs_of(settings, sweep_id))
    rerun_id = record(settings, load_plan(settings, path), kind="rerun")
    assert {j.status for j in jobs_of(settings, rerun_id)} == {JobStatus.queued}


def test_plan_counts_reused_images_and_estimates_time_from_measured_seconds_per_step(
        settings, cli_env, tiny_model, tmp_path):
    path = grid_file(tmp_path, cfg="[4, 6]")
    runner = CliRunner()
    before = runner.invoke(cli, ["plan", str(path)], env=cli_env)
    assert "reused:          0" in before.stdout and "estimate:        unknown" in before.stdout
    render(settings, path)
    path.write_text(GRID.format(cfg="[4, 6, 8]"), encoding="utf-8")

    text = runner.invoke(cli, ["plan", str(path)], env=cli_env).stdout
    assert "images:          9 (1 prompt x 3 cfg x 3 steps x 1 seed)" in text
    assert "reused:          6" in text and "to render:       3 in 3 batches" in text
    assert "denoising steps: 9 to render (of 27)" in text
    data = json.loads(runner.invoke(cli, ["plan", str(path), "--json"], env=cli_env).stdout)
    assert (data["images"], data["reused"], data["to_render"], data["batches"]) == (9, 6, 3, 3)
    done = [j for j in jobs_of(settings, 1)]
    per_step = sum(j.render_seconds for j in done) / sum(j.steps for j in done)
    assert data["estimate_seconds"] == round(per_step * 9, 3) and data["unmeasured_images"] == 0
    forced = json.loads(runner.invoke(cli, ["plan", str(path), "--json", "--force"], env=cli_env).stdout)
    assert (forced["reused"], forced["to_render"]) == (0, 9)


def test_plan_of_a_large_grid_imports_no_torch_and_creates_no_database(tmp_path, model_dir):
    path = write_job(tmp_path, 'model = "builtin:tiny"\nprompt = "a {red|blue} cat"\nseeds = [1]\n'
                               '[axes]\nx = { cfg = "1-25 [50]" }\ny = { steps = "1-100" }\n')
    code = ("import sys\nfrom sdfarm.cli.main import cli\n"
            "try:\n    cli(['plan', sys.argv[1]], standalone_mode=False)\nfinally:\n"
            "    print('torch' in sys.modules, 'diffusers' in sys.modules)\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SDFARM_")}
    env.update(SDFARM_DATABASE_URL=f"sqlite:///{tmp_path / 'none.db'}", SDFARM_MODEL_DIR=str(model_dir))
    out = subprocess.run([sys.executable, "-c", code, str(path)], env=env, capture_output=True,
                         text=True, check=True).stdout
    assert "images:          10000 (2 prompts x 50 cfg x 100 steps x 1 seed)" in out
    assert out.strip().endswith("False False")
    assert not (tmp_path / "none.db").exists()


def test_killing_render_and_running_it_again_finishes_only_what_is_missing(
        settings, cli_env, tiny_model, tmp_path):
    # Slow enough cells (30 steps, one per forward pass) to be killed between two of them.
    path = write_job(tmp_path, "batch_size = 1\n" + GRID.format(cfg="[4, 6, 8, 10]")
                     .replace("[2, 3, 4]", "[30, 31, 32]"))
    proc = subprocess.Popen([sys.executable, "-m", "sdfarm.cli", "render", str(path), "-q"],
                            env=cli_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    db = settings.database_url.removeprefix("sqlite:///")
    try:
        end = time.monotonic() + deadline(240)
        while _count(db, "SELECT count(*) FROM jobs WHERE sweep_id = 1 AND status = 'done'") < 3:
            assert proc.poll() is None, "render ended before it could be killed"
            assert time.monotonic() < end
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    done_before = _count(db, "SELECT count(*) FROM jobs WHERE sweep_id = 1 AND status = 'done'")
    assert 3 <= done_before < 12

    again = subprocess.run([sys.executable, "-m", "sdfarm.cli", "render", str(path), "-q"],
                           env=cli_env, capture_output=True, text=True, timeout=deadline(300))
    assert again.returncode == 0, again.stderr
    assert f"12 images, {done_before} reused, {12 - done_before} to render" in again.stderr
    assert _count(db, "SELECT count(*) FROM jobs WHERE sweep_id = 2 AND status = 'done'") == 12
    assert _count(db, "SELECT count(*) FROM jobs WHERE sweep_id = 2 AND render_seconds IS NOT NULL") \
        == 12 - done_before


def _count(db: str, sql: str) -> int:
    try:
        with sqlite3.connect(db, timeout=deadline(30)) as conn:
            return conn.execute(sql).fetchone()[0]
    except sqlite3.OperationalError:  # not created yet
        return 0


def test_a_random_sweep_is_planned_again_identically_from_what_the_database_recorded(settings, tmp_path):
    (tmp_path / "wildcards").mkdir()
    (tmp_path / "wildcards" / "animal.txt").write_text("cat\nfox\nowl\nbee\n", encoding="utf-8")
    path = write_job(tmp_path, 'model = "builtin:tiny"\nprompt = "a {red|blue} __animal__"\n'
                               'prompts = { random = 5 }\nseeds = { random = 2 }\n')
    sweep_id = record(settings, load_plan(settings, path))
    with session_factory(settings.database_url)() as s:
        sweep = s.get(Sweep, sweep_id)
        again = parse_job_file(sweep.job_file_text, sweep.job_file_path)
        assert again.sweep_seed == sweep.sweep_seed
    recorded = [(j.prompt, j.seed, j.grid_prompt, j.grid_seed) for j in jobs_of(settings, sweep_id)]
    replanned = make_plan(again)
    assert [(s.prompt, s.seed, c.prompt, c.seed) for s, c in zip(replanned.specs, replanned.cells)] == recorded
    assert len(recorded) == 10


def test_a_reused_image_deleted_before_it_is_linked_is_rendered_instead(tmp_path):
    source = tmp_path / "a.png"
    source.write_bytes(b"png")
    linked = place_image(source, tmp_path / "sweep-2" / "00001-5.png")
    assert linked is not None and os.path.samefile(linked, source)
    assert place_image(tmp_path / "gone.png", tmp_path / "sweep-2" / "00002-5.png") is None
    assert sorted(p.name for p in (tmp_path / "sweep-2").iterdir()) == ["00001-5.png"]


def test_a_missing_wildcard_fails_render_in_one_line_before_anything_is_recorded(settings, cli_env, tmp_path):
    path = write_job(tmp_path, 'model = "builtin:tiny"\nprompt = "a __colour__ cat"\n')
    result = CliRunner().invoke(cli, ["render", str(path), "-q"], env=cli_env)
    assert result.exit_code == 1
    message = result.stderr.strip()
    assert "\n" not in message
    assert message == f"Error: {path}: prompt: wildcard __colour__ is used but the wildcard folder " \
                      f"{tmp_path / 'wildcards'} does not exist"
    db = Path(settings.database_url.removeprefix("sqlite:///"))
    assert not db.exists() or _count(str(db), "SELECT count(*) FROM sweeps") == 0


def test_grid_cells_resume_and_grid_pages_work_the_same_on_postgresql(settings, postgres_url, tmp_path):
    from sdfarm.grids.model import load_grid
    from sdfarm.worker.batch import render_batch
    from sdfarm.worker.render import FakeRenderer

    pg = settings.with_(database_url=postgres_url)
    path = write_job(tmp_path, 'model = "builtin:tiny"\nprompt = "a {red|blue} kite"\nwidth = 64\n'
                               'height = 64\nseeds = [1]\n[axes]\nx = { cfg = [4, 8] }\n'
                               '[[axes.extra]]\nclip_skip = [1, 2]\n')
    first = record(pg, load_plan(pg, path))
    render_batch([j.id for j in jobs_of(pg, first)], pg, renderer=FakeRenderer(0))
    second = record(pg, load_plan(pg, path))
    jobs = jobs_of(pg, second)
    assert len(jobs) == 8 and all(j.reused_from_job_id is not None for j in jobs)
    assert sorted({tuple(j.grid_extra) for j in jobs}) == [(0,), (1,)]
    with session_factory(pg.database_url)() as session:
        grid = load_grid(session, second)
    assert [p.name for p in grid.pages] == ["grid-p1-extra1-1", "grid-p1-extra1-2",
                                            "grid-p2-extra1-1", "grid-p2-extra1-2"]
    assert grid.done == 8
