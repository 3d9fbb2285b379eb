"""Hires fix on builtin:tiny: A1111's two passes through diffusers' img2img pipeline; cells
that differ only in hires settings share one first pass, and each equals a hires render done
alone; reruns are exact; the settings round-trip through the PNG."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from sqlalchemy import select

from sdfarm.cli.main import cli
from sdfarm.db.engine import session_factory
from sdfarm.db.models import Job
from sdfarm.metadata.chunks import read_png_text
from sdfarm.usecases.render import load_plan
from sdfarm.worker.batch import process_renderer
from sdfarm.worker.hires import FirstPasses
from tests.conftest import pixels, write_job

# One torch thread: on a loaded 2-core machine two threads make these renders 10x slower.
pytestmark = [pytest.mark.usefixtures("one_torch_thread"), pytest.mark.torch_threads(1)]

HIRES_GRID = """\
model = "builtin:tiny"
prompt = "a lighthouse at dusk"
steps = 3
width = 64
height = 64
seeds = [5, 6]
batch_size = {batch}
hires = {{ scale = 2, steps = 2, upscaler = "{upscaler}" }}
[axes]
x = {{ hires_denoise = "0.3, 0.5, 0.7" }}
"""

ALONE = """\
model = "builtin:tiny"
prompt = "a lighthouse at dusk"
steps = 3
width = 64
height = 64
seeds = [{seed}]
hires = {{ scale = 2, steps = 2, denoise = {denoise}, upscaler = "{upscaler}" }}
"""


def sdfarm(env: dict, *args):
    return CliRunner().invoke(cli, [str(a) for a in args], env=env)


def done_jobs(settings) -> list[Job]:
    with session_factory(settings.database_url)() as session:
        return list(session.scalars(select(Job).order_by(Job.id)))


@pytest.mark.parametrize("upscaler", ["latent", "lanczos"])
def test_a_hires_denoise_axis_renders_one_first_pass_per_seed_and_each_cell_equals_a_render_alone(
        settings, cli_env, tiny_model, tmp_path, upscaler):
    # Given a grid of 3 hires denoise values x 2 seeds, one image a pass (so that a render
    # alone is the same pass), rendered by this process's renderer
    renderer = process_renderer(settings)
    renderer.first_passes = FirstPasses()
    grid = write_job(tmp_path, HIRES_GRID.format(batch=1, upscaler=upscaler))
    result = sdfarm(cli_env, "render", grid, "-q")
    assert result.exit_code == 0, result.output
    # Then 2 first passes were rendered, not 6, and every cell is a 128 px image
    assert (renderer.first_passes.rendered, renderer.first_passes.passes) == (2, 2)
    jobs = done_jobs(settings)
    assert len(jobs) == 6 and {j.status.value for j in jobs} == {"done"}
    cells = {(j.seed, j.hires_denoise): (j.key, pixels(j.output_path)) for j in jobs}
    assert {c.shape for _, c in cells.values()} == {(128, 128, 3)}
    assert len({c.tobytes() for _, c in cells.values()}) == 6  # the denoise changes the pixels
    # And each cell equals the same hires render done alone: a job file of that one image
    # plans the cell's key, and its render, with a first pass of its own, has its pixels
    for (seed, denoise), (key, cell) in cells.items():
        alone = write_job(tmp_path, ALONE.format(seed=seed, denoise=denoise, upscaler=upscaler),
                          name=f"alone-{seed}-{denoise}.toml")
        (spec,) = load_plan(settings, alone).specs
        assert spec.key == key
        renderer.first_passes = FirstPasses()
        (image,) = renderer.render([spec], model_config=None, allow_pickle=False,
                                   on_step=lambda: None)
        assert renderer.first_passes.rendered == 1
        assert np.array_equal(np.asarray(image.convert("RGB")), cell), (seed, denoise)


def test_passes_of_several_seeds_share_their_first_pass_and_rerun_identically(
        settings, cli_env, tiny_model, tmp_path):
    # Given the grid at the default batch size: each denoise value is one pass of both seeds
    renderer = process_renderer(settings)
    renderer.first_passes = FirstPasses()
    grid = write_job(tmp_path, HIRES_GRID.format(batch=4, upscaler="latent"))
    assert sdfarm(cli_env, "render", grid, "-q").exit_code == 0
    # Then one first pass of the 2 seeds served the 3 passes
    assert (renderer.first_passes.rendered, renderer.first_passes.passes) == (2, 1)
    jobs = done_jobs(settings)
    assert len({j.pass_id for j in jobs}) == 3 and {j.pass_size for j in jobs} == {2}
    # And a rerun of a cell (its pass rebuilt, its first pass rendered anew) is identical
    renderer.first_passes = FirstPasses()
    cell = next(j for j in jobs if j.hires_denoise == 0.5 and j.seed == 6)
    rerun = sdfarm(cli_env, "rerun", cell.id)
    assert rerun.exit_code == 0, rerun.output
    assert "identical: every pixel matches the original" in rerun.stdout
    assert renderer.first_passes.rendered == 2
    # And rerun --set changes a hires setting like any other: the cell of that value's key
    changed = sdfarm(cli_env, "rerun", cell.id, "--set", "hires_denoise=0.3")
    assert changed.exit_code == 0, changed.output
    new = done_jobs(settings)[-1]
    assert new.key == next(j.key for j in jobs if j.hires_denoise == 0.3 and j.seed == 6)


def test_hires_settings_are_written_as_a1111_writes_them_and_index_reads_them_back(
        settings, cli_env, tiny_model, tmp_path):
    job = write_job(tmp_path, ALONE.format(seed=7, denoise=0.45, upscaler="Lanczos"))
    assert sdfarm(cli_env, "render", job, "-q").exit_code == 0
    (rendered,) = done_jobs(settings)
    text = read_png_text(Path(rendered.output_path).read_bytes())["parameters"]
    assert "Size: 64x64" in text  # the first pass's size, as in A1111
    assert ("Denoising strength: 0.45, Hires upscale: 2, Hires steps: 2, "
            "Hires upscaler: Lanczos") in text
    # When the image alone (without sdfarm's own chunk) is indexed
    with Image.open(rendered.output_path) as im:
        from PIL.PngImagePlugin import PngInfo

        info = PngInfo()
        info.add_text("parameters", text)
        (tmp_path / "a1111").mkdir()
        im.save(tmp_path / "a1111" / "copy.png", pnginfo=info)
    assert sdfarm(cli_env, "index", tmp_path / "a1111", "-q").exit_code == 0
    rows = json.loads(sdfarm(cli_env, "history", "--sweep", 2, "--json").stdout)
    assert len(rows) == 1
    # Then the hires settings are columns again, and its key is the rendered job's
    indexed = done_jobs(settings)[-1]
    assert (indexed.hires_scale, indexed.hires_steps, indexed.hires_denoise,
            indexed.hires_upscaler) == (2.0, 2, 0.45, "Lanczos")
    assert not (indexed.extra_params or {}).keys() & {"Hires upscale", "Denoising strength"}
    assert indexed.key == rendered.key


def test_hires_on_a_flow_model_is_refused_at_plan_time(settings, cli_env, tmp_path):
    job = write_job(tmp_path, 'model = "builtin:tiny-flux"\nprompt = "a cat"\n'
                              "hires = { scale = 2 }\n")
    result = sdfarm(cli_env, "plan", job)
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: {job}: hires_scale: Flux.1-dev models do not "
                                    "use hires_scale")


def test_the_example_hires_grid_plans_6_cells_in_3_passes_of_both_seeds(settings):
    from tests.integration.test_cli import REPO

    plan = load_plan(settings, REPO / "examples" / "hires-denoise-grid.toml")
    assert plan.images == 6 and [len(b) for b in plan.batches] == [2, 2, 2]
    assert {s.width * 2 for s in plan.specs} == {128} and {s.hires_scale for s in plan.specs} == {2.0}
