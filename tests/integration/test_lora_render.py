"""LoRAs rendered on builtin:tiny with tiny random LoRAs made by peft and the real classes
(issue 11): weight 0 is the base model, the kohya and diffusers layouts are one LoRA, a weight
grid loads it once, a rerun is exact, and the infotext's ``Lora hashes`` comes back through
``index`` and ``history --lora``."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from PIL.PngImagePlugin import PngInfo
from sqlalchemy import func, select

from sdfarm.cli.main import cli
from sdfarm.config import Settings
from sdfarm.db.engine import session_factory
from sdfarm.db.history import HistoryQuery, search_jobs
from sdfarm.db.models import Job, JobStatus
from sdfarm.errors import JobFileError, ModelError
from sdfarm.metadata.chunks import read_png_text
from sdfarm.scheduler.jobfile import parse_job_file
from sdfarm.scheduler.loras import LoraError, LoraFolder, lora_fields
from sdfarm.scheduler.plan import make_plan
from sdfarm.spec import RenderSpec
from sdfarm.usecases.history import index_images
from sdfarm.usecases.local import render_sweep_locally
from sdfarm.usecases.record import record
from sdfarm.usecases.render import load_plan
from sdfarm.usecases.rerun import rerun_job
from sdfarm.worker.render import DiffusersRenderer
from sdfarm.worker.tinylora import write_tiny_lora, write_tiny_loras
from tests.conftest import TEST_THREADS, write_job

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def lora_dir(tmp_path_factory, model_dir, tiny_model) -> Path:
    """``x`` in diffusers' layout, ``x_kohya`` the same weights in kohya's, ``y`` another."""
    folder = tmp_path_factory.mktemp("loras")
    write_tiny_loras({folder / "x.safetensors": "diffusers",
                      folder / "x_kohya.safetensors": "kohya"}, model_dir, seed=1)
    write_tiny_lora(folder / "y.safetensors", model_dir, seed=2)
    return folder


@pytest.fixture(scope="module")
def renderer(model_dir, lora_dir):
    """One renderer for the module: it counts its model and LoRA loads."""
    settings = Settings(database_url="sqlite://", model_dir=model_dir, device="cpu",
                        threads=TEST_THREADS, lora_dir=lora_dir)
    return DiffusersRenderer(settings)


@pytest.fixture
def lora_settings(settings: Settings, lora_dir: Path) -> Settings:
    return settings.with_(lora_dir=lora_dir)


def spec(lora_dir: Path, prompt: str, seed: int = 1) -> RenderSpec:
    """A spec as planning makes it: the LoRA fields from the prompt's tags."""
    fields = lora_fields(prompt, LoraFolder(lora_dir).hash_of)
    return RenderSpec(model="builtin:tiny", prompt=prompt, seed=seed, steps=3, width=64,
                      height=64, loras=fields.loras, lora_hashes=fields.lora_hashes)


def render(renderer, *specs: RenderSpec) -> list[np.ndarray]:
    images = renderer.render(list(specs), model_config=None, allow_pickle=False,
                             on_step=lambda: None)
    return [np.asarray(im, dtype=int) for im in images]


def test_weight_0_gives_the_base_models_pixels_exactly_and_0_5_changes_them(renderer, lora_dir):
    [base] = render(renderer, spec(lora_dir, "a cat"))
    [half] = render(renderer, spec(lora_dir, "a cat <lora:x:0.5>"))
    [zero] = render(renderer, spec(lora_dir, "a cat <lora:x:0>"))
    [base_again] = render(renderer, spec(lora_dir, "a cat"))
    assert np.abs(half - base).max() > 0
    assert np.array_equal(zero, base)
    # And a pass without LoRA after one with it is the base model again (adapters disabled)
    assert np.array_equal(base_again, base)


def test_the_kohya_and_diffusers_layouts_of_one_lora_give_identical_pixels(renderer, lora_dir):
    diffusers = render(renderer, *(spec(lora_dir, "a cat <lora:x:0.7>", s) for s in (1, 2)))
    kohya = render(renderer, *(spec(lora_dir, "a cat <lora:x_kohya:0.7>", s) for s in (1, 2)))
    for a, b in zip(diffusers, kohya):
        assert np.array_equal(a, b)
    other = render(renderer, spec(lora_dir, "a cat <lora:y:0.7>", 1))[0]
    assert np.abs(other - diffusers[0]).max() > 0


def test_two_loras_at_once_differ_from_each_alone(renderer, lora_dir):
    [both] = render(renderer, spec(lora_dir, "a cat <lora:x:0.5> <lora:y:0.5>"))
    [x] = render(renderer, spec(lora_dir, "a cat <lora:x:0.5>"))
    [y] = render(renderer, spec(lora_dir, "a cat <lora:y:0.5>"))
    assert np.abs(both - x).max() > 0 and np.abs(both - y).max() > 0


def test_a_grid_over_lora_weight_by_seed_loads_the_lora_once(model_dir, lora_dir):
    # Given a fresh renderer and a grid of 5 weights x 2 seeds
    renderer = DiffusersRenderer(Settings(database_url="sqlite://", model_dir=model_dir,
                                          device="cpu", threads=TEST_THREADS, lora_dir=lora_dir))
    job = parse_job_file('model = "builtin:tiny"\nprompt = "a cat"\nsteps = 3\nwidth = 64\n'
                         'height = 64\nseeds = [1, 2]\n[axes]\n'
                         'x = { lora_weight = { name = "x", values = "0-1 (+0.25)" } }\n',
                         "grid.toml")
    plan = make_plan(job, lora_hashes=LoraFolder(lora_dir).hash_of)
    # When every pass of the plan is rendered
    images = {}
    for batch in plan.batches:
        specs = [plan.specs[i] for i in batch]
        for s, pixels in zip(specs, render(renderer, *specs)):
            images[(s.loras, s.seed)] = pixels
    # Then each weight was one pass, the model and the LoRA each loaded once
    assert len(plan.batches) == 5 and len(images) == 10
    assert renderer.loads == {"builtin:tiny": 1}
    assert renderer.loras.loads == {"x": 1}
    # And every weight gives its own pixels
    assert len({images[(f"x:{w}", 1)].tobytes() for w in ("0", "0.25", "0.5", "0.75", "1")}) == 5


def test_prompt_sr_over_a_lora_tag_renders_the_swapped_lora(renderer, lora_dir):
    job = parse_job_file('model = "builtin:tiny"\nprompt = "a cat <lora:x:0.5>"\nsteps = 3\n'
                         'width = 64\nheight = 64\nseeds = [1]\n[axes]\n'
                         'x = { prompt_sr = ["<lora:x:0.5>", "<lora:y:0.5>"] }\n', "sr.toml")
    plan = make_plan(job, lora_hashes=LoraFolder(lora_dir).hash_of)
    by_set = {s.loras: render(renderer, s)[0] for s in plan.specs}
    assert set(by_set) == {"x:0.5", "y:0.5"}
    [alone] = render(renderer, spec(lora_dir, "a cat <lora:y:0.5>"))
    assert np.array_equal(by_set["y:0.5"], alone)


JOB = """
name = "lora"
model = "builtin:tiny"
prompt = "a cat <lora:x:0.5>"
steps = 3
width = 64
height = 64
seeds = [5, 6]
"""


def jobs_of(settings, sweep_id) -> list[Job]:
    with session_factory(settings.database_url)() as s:
        return list(s.scalars(select(Job).where(Job.sweep_id == sweep_id).order_by(Job.seq)))


def test_a_lora_job_reruns_bit_identically_and_its_hashes_come_back_through_index(
        lora_settings, lora_dir, tmp_path):
    # Given a LoRA job rendered and recorded
    plan = load_plan(lora_settings, write_job(tmp_path, JOB))
    sweep_id = record(lora_settings, plan)
    assert render_sweep_locally(lora_settings, sweep_id).done == 2
    first = jobs_of(lora_settings, sweep_id)[0]
    assert (first.loras, first.status) == ("x:0.5", JobStatus.done)
    assert first.lora_hashes.startswith("x: ") and len(first.lora_hashes) == 3 + 12
    # When it is rerun, every pixel matches
    rerun = rerun_job(lora_settings, first.id, {})
    assert rerun.difference == 0
    # And its PNG says "Lora hashes" as A1111 writes it
    parameters = read_png_text(Path(first.output_path).read_bytes())["parameters"]
    assert f'Lora hashes: "{first.lora_hashes}"' in parameters
    # When only that A1111 text is indexed (no sdfarm chunk), the LoRA fields are read back
    info = PngInfo()
    info.add_text("parameters", parameters)
    folder = tmp_path / "a1111"
    folder.mkdir()
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, format="PNG", pnginfo=info)
    (folder / "cat.png").write_bytes(buf.getvalue())
    report = index_images(lora_settings, folder)
    assert report.indexed == 1, report.problems
    [imported] = jobs_of(lora_settings, report.sweep_id)
    assert (imported.loras, imported.lora_hashes) == (first.loras, first.lora_hashes)
    # And history --lora finds the rendered jobs, the rerun pass and the imported one, by name
    with session_factory(lora_settings.database_url)() as session:
        found = search_jobs(session, HistoryQuery(lora="X"), limit=None)
        assert len(found) == 5 and all(j.loras == "x:0.5" for j in found)
        assert search_jobs(session, HistoryQuery(lora="y"), limit=None) == []
    # And so does the command, as a user types it
    typed = CliRunner().invoke(cli, ["history", "--lora", "x", "--json", "--limit", "0"],
                               env={"SDFARM_DATABASE_URL": lora_settings.database_url})
    assert typed.exit_code == 0, typed.output
    assert len(json.loads(typed.stdout)) == 5


def test_a_missing_lora_is_a_plan_time_error_and_nothing_is_recorded(lora_settings, lora_dir,
                                                                     tmp_path):
    path = write_job(tmp_path, JOB.replace("<lora:x:0.5>", "<lora:ghost_v1.5:0.5>"))
    with pytest.raises(JobFileError) as caught:
        load_plan(lora_settings, path)
    assert f"{path}: prompt: LoRA 'ghost_v1.5' not found" in str(caught.value)
    assert str(lora_dir) in str(caught.value)
    assert not Path(lora_settings.database_url.removeprefix("sqlite:///")).exists()


def test_on_sdxl_weight_0_is_the_base_and_both_layouts_agree(renderer, model_dir, tmp_path):
    # Given a tiny random LoRA for the tiny SDXL (both text encoders), in both layouts
    folder = renderer.loras.folder
    write_tiny_loras({folder / "xl.safetensors": "diffusers",
                      folder / "xl_kohya.safetensors": "kohya"}, model_dir,
                     builtin="tiny-sdxl", seed=3)

    def xl(prompt: str) -> np.ndarray:
        s = spec(folder, prompt).replace(model="builtin:tiny-sdxl", family="sdxl")
        return render(renderer, s)[0]

    base, zero, half, kohya = (xl(p) for p in ("a cat", "a cat <lora:xl:0>", "a cat <lora:xl:0.5>",
                                               "a cat <lora:xl_kohya:0.5>"))
    assert np.array_equal(zero, base)
    assert np.abs(half - base).max() > 0
    assert np.array_equal(kohya, half)
    # And the SDXL LoRA on the SD 1.x model fails its pass, naming it, and leaves that model
    # rendering its base pixels
    [sd1] = render(renderer, spec(folder, "a cat"))
    with pytest.raises(ModelError, match="LoRA 'xl' .* does not load into this model"):
        render(renderer, spec(folder, "a cat <lora:xl:1>"))
    assert np.array_equal(render(renderer, spec(folder, "a cat"))[0], sd1)


def test_an_imported_image_whose_lora_is_not_here_is_refused_before_anything_is_recorded(
        lora_settings, tmp_path):
    # Given an A1111 image made with a LoRA this machine does not have
    info = PngInfo()
    info.add_text("parameters", 'a red boat <lora:film:0.8>\nSteps: 2, Sampler: Euler, CFG '
                                'scale: 7, Seed: 3, Size: 64x64, Model: builtin:tiny, '
                                'Lora hashes: "film: 0123456789ab", Version: v1.10.1')
    folder = tmp_path / "a1111"
    folder.mkdir()
    Image.new("RGB", (8, 8)).save(folder / "boat.png", pnginfo=info)
    report = index_images(lora_settings, folder)
    [job] = jobs_of(lora_settings, report.sweep_id)
    assert (job.loras, job.lora_hashes) == ("film:0.8", "film: 0123456789ab")
    # When it is rerun, the error names the job, the LoRA and the folder, and records nothing
    with pytest.raises(LoraError) as caught:
        rerun_job(lora_settings, job.id, {})
    assert str(caught.value).startswith(f"job {job.id}: LoRA 'film' not found")
    assert str(lora_settings.lora_folder) in str(caught.value)
    with session_factory(lora_settings.database_url)() as session:
        assert session.scalar(select(func.count()).select_from(Job)) == 1
