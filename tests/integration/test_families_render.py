"""Every model family renders as a user runs it: ``sdfarm render`` in a fresh process gives the
same pixels as in this one, ``history --family`` finds them, ``rerun`` gives them back exactly, and the
PNG's A1111 text says how to make them again. One grid holds all the tiny built-in families,
so it also shows a model axis mixing families: each cell with its own pipeline class."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sdfarm.metadata.generation import generation_from_chunks
from sdfarm.modelref import BUILTIN_FAMILIES
from sdfarm.usecases.local import render_sweep_locally
from sdfarm.usecases.record import record
from sdfarm.usecases.render import load_plan
from sdfarm.worker.batch import process_renderer
from tests.conftest import write_job
from tests.integration.test_cli import run, sdfarm
from tests.unit.test_modeldetect import SD1, SDXL_REFINER, UNET, write_checkpoint

TINY = ("tiny", "tiny-sd2v", "tiny-sdxl", "tiny-flux", "tiny-sd3")

#: Each family at a size every family takes (flow models need multiples of 16), few steps.
GRID = f"""
name = "families"
model = "builtin:tiny"
prompt = "a lighthouse on a cliff"
seeds = "1-2"
width = 64
height = 64
steps = 4
[axes]
x = {{ model = "{', '.join('builtin:' + n for n in TINY)}" }}
"""


def pixels(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.int16)


def jobs_of(settings) -> list[tuple]:
    path = settings.database_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT id, model, family, prediction, seed, output_path, status "
                            "FROM jobs ORDER BY model, seed").fetchall()


@pytest.fixture(scope="module")
def built(model_dir):
    from sdfarm.worker.builtin import ensure_builtin

    for name in TINY:
        ensure_builtin(name, model_dir)


def test_each_family_renders_the_same_pixels_in_fresh_processes_and_history_finds_it(
        settings, cli_env, built, tmp_path):
    path = write_job(tmp_path, GRID)
    # When the grid is rendered by `sdfarm render` in a fresh process, and again in this one
    # into another database and folder
    sdfarm(cli_env, "render", path, "--quiet")
    other = dict(cli_env, SDFARM_DATABASE_URL=f"sqlite:///{tmp_path / 'other.db'}",
                 SDFARM_OUTPUT_DIR=str(tmp_path / "other"))
    run(other, "render", path, "--quiet")
    first = jobs_of(settings)
    second = jobs_of(settings.with_(database_url=other["SDFARM_DATABASE_URL"]))
    # Then every image is done, recorded with its model's family, identical in both runs
    assert len(first) == len(second) == 2 * len(TINY)
    for a, b in zip(first, second):
        model = a[1].removeprefix("builtin:")
        assert a[6] == b[6] == "done"
        assert (a[2], a[3]) == BUILTIN_FAMILIES[model]
        image = pixels(a[5])
        assert image.shape == (64, 64, 3) and image.std() > 0, model
        assert np.array_equal(image, pixels(b[5])), f"{model} seed {a[4]} differs between runs"
    # ...and images of different families differ (each rendered with its own pipeline)
    by_model = {row[1]: pixels(row[5]) for row in first if row[4] == 1}
    assert len({im.tobytes() for im in by_model.values()}) == len(TINY)
    # And history --family finds exactly each family's images
    for name in TINY:
        family = BUILTIN_FAMILIES[name][0]
        rows = json.loads(run(cli_env, "history", "--family", family, "--json"))
        assert sorted(r["model"] for r in rows) == [f"builtin:{name}"] * 2, family


def test_each_familys_png_says_how_to_make_it_again_and_rerun_gives_the_same_pixels(
        settings, cli_env, built, tmp_path):
    path = write_job(tmp_path, GRID.replace('seeds = "1-2"', "seeds = [7]"))
    run(cli_env, "render", path, "--quiet")
    for job_id, model, family, prediction, seed, output, _ in jobs_of(settings):
        # The A1111 text alone (as another tool would read it) gives back the job's parameters
        with Image.open(output) as im:
            spec = generation_from_chunks({"parameters": im.text["parameters"]}).spec
        assert (spec.family, spec.prediction, spec.seed, spec.steps) == (family, prediction, 7, 4)
        if family == "flux-dev":
            assert "Distilled CFG Scale: 3.5" in im.text["parameters"]
        # And rerun renders it again, identically
        out = run(cli_env, "rerun", job_id)
        assert "identical: every pixel matches the original" in out, (model, out)


def test_a_mixed_sd1_and_sdxl_axis_loads_each_model_once_and_sizes_each_cell_by_family(
        settings, built, tmp_path):
    # Given a model axis of an SD 1.x and an SDXL model, the size left to each family, two
    # batches per model
    path = write_job(tmp_path, """
name = "mixed"
model = "builtin:tiny"
prompt = "a red fox"
seeds = "1-4"
batch_size = 2
steps = 2
[axes]
x = { model = "builtin:tiny-sdxl, builtin:tiny" }
y = { cfg = "5, 7" }
""")
    plan = load_plan(settings, path)
    sizes = {(s.model, s.family, s.width) for s in plan.specs}
    assert sizes == {("builtin:tiny", "sd1", 512), ("builtin:tiny-sdxl", "sdxl", 1024)}
    # (512 and 1024 px are slow on a CPU: the test renders its cells at 64 px, as a size
    # axis would, keeping the family each cell was planned with)
    small = path.read_text().replace("steps = 2", "steps = 2\nwidth = 64\nheight = 64")
    plan = load_plan(settings, write_job(tmp_path, small, "small.toml"))
    sweep_id = record(settings, plan)
    renderer = process_renderer(settings)
    loads_before = dict(renderer.loads)
    # When it renders in one process
    outcome = render_sweep_locally(settings, sweep_id)
    # Then every image is done (an SDXL model in SD 1.x's pipeline fails at its first step)
    # and each model was loaded once
    assert outcome.done == 16
    loaded = {m: renderer.loads[m] - loads_before.get(m, 0) for m in renderer.loads}
    assert {m: n for m, n in loaded.items() if n} == {"builtin:tiny": 1, "builtin:tiny-sdxl": 1}


@pytest.mark.parametrize("keys, words", [
    ({**SD1, UNET + "input_blocks.0.0.weight": [320, 9, 3, 3]},
     "an SD 1.x inpainting checkpoint (9 input channels) is not supported"),
    (SDXL_REFINER, "an SDXL refiner checkpoint is not supported"),
])
def test_a_checkpoint_of_an_unsupported_architecture_is_one_error_and_nothing_is_recorded(
        settings, cli_env, tmp_path, keys, words):
    write_checkpoint(tmp_path / "odd.safetensors", keys)
    # As the second model of an axis, so that nothing of the first is recorded either
    path = write_job(tmp_path, 'model = "builtin:tiny"\nprompt = "a cat"\n'
                               '[axes]\nx = { model = "builtin:tiny, odd.safetensors" }\n')
    result = sdfarm(cli_env, "render", path, "--quiet", check=False)
    assert result.returncode == 1
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"Error: {path}: axes.x.model: ") and words in line, line
    assert "odd.safetensors" in line
    assert not Path(settings.database_url.removeprefix("sqlite:///")).exists() or \
        sqlite3.connect(settings.database_url.removeprefix("sqlite:///")).execute(
            "SELECT count(*) FROM sweeps").fetchone() == (0,)
