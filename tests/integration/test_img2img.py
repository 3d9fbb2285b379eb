"""img2img on builtin:tiny: ``init_image`` and ``denoise``; denoise 0 gives the init image back
through the VAE, reruns are exact, the image's content (not its path) is in the key, and a
missing or changed image is caught before anything renders."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from sqlalchemy import func, select

from sdfarm.cli.main import cli
from sdfarm.db.engine import session_factory
from sdfarm.db.models import Job, JobStatus, Sweep
from sdfarm.usecases.render import load_plan
from sdfarm.worker.batch import process_renderer
from tests.conftest import pixels, write_job

# One torch thread: on a loaded 2-core machine two threads make these renders 10x slower.
pytestmark = [pytest.mark.usefixtures("one_torch_thread"), pytest.mark.torch_threads(1)]

JOB = """\
model = "builtin:tiny"
prompt = "{prompt}"
steps = 4
width = 64
height = 64
init_image = "{image}"
{rest}
"""


@pytest.fixture
def init_png(tmp_path) -> Path:
    """A 48 px picture with structure (a gradient and a square), resized to 64 px by img2img."""
    y, x = np.mgrid[0:48, 0:48]
    pixels = np.stack([x * 5, y * 5, np.full_like(x, 90)], axis=-1).astype("uint8")
    pixels[12:30, 16:34] = (250, 40, 40)
    path = tmp_path / "pictures" / "init.png"
    path.parent.mkdir()
    Image.fromarray(pixels).save(path)
    return path


def sdfarm(env: dict, *args):
    return CliRunner().invoke(cli, [str(a) for a in args], env=env)


def jobs_of(settings) -> list[Job]:
    with session_factory(settings.database_url)() as session:
        return list(session.scalars(select(Job).order_by(Job.id)))


def vae_round_trip(settings, image_path: Path) -> np.ndarray:
    """The init image at 64 px through the tiny model's VAE, computed here with diffusers'
    own classes: encoded (the posterior's mean), decoded, as 8-bit pixels."""
    import torch

    pipe, _ = process_renderer(settings).pipeline("builtin:tiny", None, False)
    with Image.open(image_path) as im:
        image = im.convert("RGB").resize((64, 64), Image.Resampling.LANCZOS)
    with torch.no_grad():
        x = pipe.image_processor.preprocess(image)
        decoded = pipe.vae.decode(pipe.vae.encode(x).latent_dist.mode()).sample
    array = pipe.image_processor.postprocess(decoded, output_type="np")[0]
    return (array * 255).round().clip(0, 255).astype("uint8")


def test_denoise_0_returns_the_init_image_through_the_vae_whatever_the_prompt_and_seed(
        settings, cli_env, tiny_model, tmp_path, init_png):
    # Given img2img at denoise 0 for two prompts and two seeds, one image a pass (a pass of
    # several moves a few pixels of the VAE's output by one level: a seed's neighbours)
    job = write_job(tmp_path, JOB.format(prompt="{a red boat|a green hill}", image="pictures/init.png",
                                         rest="denoise = 0\nseeds = [1, 2]\nbatch_size = 1"))
    result = sdfarm(cli_env, "render", job, "-q")
    assert result.exit_code == 0, result.output
    jobs = jobs_of(settings)
    assert len(jobs) == 4 and {j.status for j in jobs} == {JobStatus.done}
    # Then every image is the init image through the VAE, nothing else
    expected = vae_round_trip(settings, init_png)
    for job_row in jobs:
        assert np.array_equal(pixels(job_row.output_path), expected)
    # And the path is recorded absolute, with the file's sha256; a rerun is identical
    assert jobs[0].init_image == str(init_png.resolve()) and len(jobs[0].init_image_hash) == 64
    rerun = sdfarm(cli_env, "rerun", jobs[2].id)
    assert rerun.exit_code == 0, rerun.output
    assert "identical: every pixel matches the original" in rerun.stdout


def test_a_denoise_axis_changes_the_pixels_and_a_rerun_is_identical(
        settings, cli_env, tiny_model, tmp_path, init_png):
    job = write_job(tmp_path, JOB.format(prompt="a red boat", image="pictures/init.png",
                                         rest='seeds = [3, 4]\n[axes]\nx = { denoise = "0.5, 1" }'))
    assert sdfarm(cli_env, "render", job, "-q").exit_code == 0
    jobs = jobs_of(settings)
    assert sorted((j.denoise, j.seed) for j in jobs) == [(0.5, 3), (0.5, 4), (1.0, 3), (1.0, 4)]
    assert len({pixels(j.output_path).tobytes() for j in jobs}) == 4
    infotext = jobs[0]
    from sdfarm.metadata.chunks import read_png_text

    text = read_png_text(Path(infotext.output_path).read_bytes())["parameters"]
    assert f"Denoising strength: {infotext.denoise:g}" in text
    # When a cell is rerun (its pass of two seeds rebuilt), every pixel matches
    cell = next(j for j in jobs if j.denoise == 0.5 and j.seed == 4)
    rerun = sdfarm(cli_env, "rerun", cell.id)
    assert rerun.exit_code == 0, rerun.output
    assert "identical: every pixel matches the original" in rerun.stdout


def test_the_init_images_content_not_its_path_is_in_the_key(settings, tiny_model, tmp_path, init_png):
    job = JOB.format(prompt="a red boat", image="init.png", rest="seeds = [3]")
    here = write_job(init_png.parent, job)
    copy_dir = tmp_path / "elsewhere"
    copy_dir.mkdir()
    shutil.copy(init_png, copy_dir / "init.png")
    there = write_job(copy_dir, job)
    key = load_plan(settings, here).keys[0]
    assert load_plan(settings, there).keys[0] == key
    # A different picture under the same name is another image
    Image.new("RGB", (48, 48), (1, 2, 3)).save(copy_dir / "init.png")
    assert load_plan(settings, there).keys[0] != key
    # And without an init image it is plain text to image
    plain = write_job(tmp_path, 'model = "builtin:tiny"\nprompt = "a red boat"\nsteps = 4\n'
                                "width = 64\nheight = 64\nseeds = [3]\n", name="plain.toml")
    assert load_plan(settings, plain).keys[0] != key


@pytest.mark.parametrize("make, problem", [
    (lambda folder: None, "init_image: no such file: "),
    (lambda folder: (folder / "init.png").write_text("not a picture"),
     "init_image: {path} is not a PNG, JPEG, WebP, GIF or BMP image"),
    (lambda folder: (folder / "init.png").mkdir(), "init_image: {path} cannot be read: "),
])
def test_a_missing_or_unreadable_init_image_is_a_plan_time_error_naming_the_key(
        settings, cli_env, tmp_path, make, problem):
    make(tmp_path)
    job = write_job(tmp_path, JOB.format(prompt="a boat", image="init.png", rest=""))
    result = sdfarm(cli_env, "render", job, "-q")
    assert result.exit_code == 1
    expected = f"Error: {job}: " + problem.format(path=tmp_path / "init.png")
    assert result.stderr.startswith(expected), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    with session_factory(settings.database_url)() as session:
        assert session.scalar(select(func.count()).select_from(Sweep)) == 0


def test_an_init_image_changed_after_rendering_is_refused_by_rerun_unless_set_anew(
        settings, cli_env, tiny_model, tmp_path, init_png):
    job = write_job(tmp_path, JOB.format(prompt="a boat", image="pictures/init.png",
                                         rest="seeds = [3]\ndenoise = 0.5"))
    assert sdfarm(cli_env, "render", job, "-q").exit_code == 0
    Image.new("RGB", (48, 48), (9, 9, 9)).save(init_png)
    # An exact rerun would not be exact: refused, nothing recorded
    rerun = sdfarm(cli_env, "rerun", 1)
    assert rerun.exit_code == 1
    assert rerun.stderr.startswith(f"Error: job 1: init image {init_png.resolve()} changed "
                                   "since it was planned")
    with session_factory(settings.database_url)() as session:
        assert session.scalar(select(func.count()).select_from(Sweep)) == 1
    # Set anew, the new picture is hashed and rendered: another key, other pixels
    again = sdfarm(cli_env, "rerun", 1, "--set", f"init_image={init_png}")
    assert again.exit_code == 0, again.output
    first, second = jobs_of(settings)
    assert second.init_image_hash != first.init_image_hash and second.key != first.key
    assert not np.array_equal(pixels(first.output_path), pixels(second.output_path))

