"""Variation seed (subseed, subseed_strength) and ENSD on builtin:tiny: each control changes
the pixels where it should and nowhere else, per image, and survives ``index`` and ``rerun``."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from PIL.PngImagePlugin import PngInfo
from sqlalchemy import select

from sdfarm.cli.main import cli
from sdfarm.db.engine import session_factory
from sdfarm.db.models import Job
from sdfarm.metadata.chunks import read_png_text
from sdfarm.spec import RenderSpec
from sdfarm.worker.batch import process_renderer
from sdfarm.worker.noise import initial_noise, slerp
from tests.conftest import write_job

BASE = RenderSpec(model="builtin:tiny", prompt="a cat", negative_prompt="blurry", seed=3,
                  steps=4, width=64, height=64)


@pytest.fixture
def renderer(settings, tiny_model):
    return process_renderer(settings)


def render(renderer, *specs: RenderSpec) -> list[np.ndarray]:
    images = renderer.render(list(specs), model_config=None, allow_pickle=False,
                             on_step=lambda: None)
    return [np.asarray(im.convert("RGB"), dtype=np.int16) for im in images]


def plain_pipeline(renderer, *specs: RenderSpec) -> list[np.ndarray]:
    """What the pipeline renders drawing its own latents from per-image CPU generators (the
    renderer before it drew the initial noise itself), with the scheduler the renderer set."""
    import torch

    pipe, _ = renderer.pipeline(specs[0].model, None, False)
    render(renderer, specs[0])  # sets the scheduler for the sampler
    first = specs[0]
    result = pipe(prompt=[s.prompt for s in specs], negative_prompt=[s.negative_prompt for s in specs],
                  num_inference_steps=first.steps, guidance_scale=first.cfg, width=first.width,
                  height=first.height, output_type="pil",
                  generator=[torch.Generator("cpu").manual_seed(s.seed) for s in specs])
    return [np.asarray(im.convert("RGB"), dtype=np.int16) for im in result.images]


def noise_of(renderer, spec: RenderSpec):
    import torch

    pipe, _ = renderer.pipeline(spec.model, None, False)
    return initial_noise(pipe, [spec], [torch.Generator("cpu").manual_seed(spec.seed)])


@pytest.mark.parametrize("sampler", ["Euler a", "DPM++ 2M Karras"])
def test_given_default_noise_controls_when_rendered_then_pixels_equal_the_plain_pipeline(renderer, sampler):
    specs = [BASE.replace(sampler=sampler, seed=s, subseed=0, subseed_strength=0.0, ensd=0)
             for s in (3, 4)]
    ours, theirs = render(renderer, *specs), plain_pipeline(renderer, *specs)
    for a, b in zip(ours, theirs, strict=True):
        assert np.array_equal(a, b)


def test_given_strength_0_when_rendered_then_it_is_the_plain_seed_bit_exactly(renderer):
    [plain] = render(renderer, BASE)
    # Not normalized on purpose: the renderer itself ignores a variation seed at strength 0.
    [zero] = render(renderer, BASE.replace(subseed=99, subseed_strength=0.0))
    assert np.array_equal(plain, zero)


def test_given_strength_1_then_the_noise_is_the_subseeds_and_a_deterministic_sampler_its_pixels(renderer):
    import torch

    full = BASE.replace(seed=3, subseed=9, subseed_strength=1.0, sampler="Euler")
    assert torch.equal(noise_of(renderer, full), noise_of(renderer, BASE.replace(seed=9)))
    [varied] = render(renderer, full)
    [other_seed] = render(renderer, BASE.replace(seed=9, sampler="Euler"))
    assert np.array_equal(varied, other_seed)


def test_given_strength_half_then_the_image_differs_from_both_seeds(renderer):
    half, seed, subseed = render(renderer, BASE.replace(subseed=9, subseed_strength=0.5, sampler="Euler"),
                                 BASE.replace(sampler="Euler"), BASE.replace(seed=9, sampler="Euler"))
    assert np.abs(half - seed).max() > 0 and np.abs(half - subseed).max() > 0


def test_slerp_keeps_the_ends_and_the_norm_and_falls_back_to_linear_when_parallel():
    import torch

    g = torch.Generator("cpu")
    a = torch.randn((4, 8, 8), generator=g.manual_seed(1))
    b = torch.randn((4, 8, 8), generator=g.manual_seed(2))
    assert slerp(0.0, a, b) is a and slerp(1.0, a, b) is b
    mid = slerp(0.5, a, b)
    # Two independent noises are near orthogonal: the half-way point keeps the noise's scale.
    assert abs(mid.norm() / a.norm() - 1) < 0.05
    near = a * 1.0001
    assert torch.allclose(slerp(0.25, a, near), 0.75 * a + 0.25 * near)


def test_given_ensd_0_then_it_is_no_ensd(renderer):
    [plain] = render(renderer, BASE)
    [zero] = render(renderer, BASE.replace(ensd=0))
    assert np.array_equal(plain, zero)


def test_given_ensd_then_euler_a_changes_and_euler_does_not(renderer):
    euler_a, euler_a_ensd = render(renderer, BASE, BASE.replace(ensd=31337))
    assert np.abs(euler_a - euler_a_ensd).max() > 0
    euler, euler_ensd = render(renderer, BASE.replace(sampler="Euler"),
                               BASE.replace(sampler="Euler", ensd=31337))
    assert np.array_equal(euler, euler_ensd)


def test_given_a_pass_mixing_noise_controls_then_each_image_is_as_it_is_alone(renderer):
    specs = [BASE, BASE.replace(seed=4, subseed=9, subseed_strength=0.3),
             BASE.replace(seed=5, subseed=9, subseed_strength=1.0, ensd=31337),
             BASE.replace(seed=6, ensd=31337)]
    together = render(renderer, *specs)
    for spec, image in zip(specs, together, strict=True):
        [alone] = render(renderer, spec)
        # Within what a batch neighbour changes today (test_render: one level).
        assert np.abs(image - alone).max() <= 1, spec


# --- through the CLI: infotext, index, rerun ------------------------------------------------

JOB = ('name = "noise"\nmodel = "builtin:tiny"\nprompt = "a red boat, at sea"\nsteps = 3\n'
       'width = 64\nheight = 64\nseeds = [11]\nsampler = "Euler a"\n'
       'subseed = 123\nsubseed_strength = 0.3\nensd = 31337\n')


def sdfarm(env: dict, *args):
    return CliRunner().invoke(cli, [str(a) for a in args], env=env)


def only_job(url: str) -> Job:
    with session_factory(url)() as session:
        return session.scalars(select(Job).order_by(Job.id.desc())).first()


def test_given_noise_controls_when_rendered_then_indexed_and_rerun_then_it_is_bit_identical(
        settings, cli_env, tiny_model, tmp_path):
    # Given an image rendered with a variation seed and ENSD
    assert sdfarm(cli_env, "render", write_job(tmp_path, JOB), "-q").exit_code == 0
    original = only_job(settings.database_url)
    assert (original.subseed, original.subseed_strength, original.ensd) == (123, 0.3, 31337)
    text = read_png_text(Path(original.output_path).read_bytes())["parameters"]
    assert "Variation seed: 123, Variation seed strength: 0.3, ENSD: 31337" in text
    # When its folder is indexed into another database
    other = {**cli_env, "SDFARM_DATABASE_URL": f"sqlite:///{tmp_path / 'other.db'}"}
    assert sdfarm(other, "index", settings.output_dir, "-q").exit_code == 0
    indexed = only_job(other["SDFARM_DATABASE_URL"])
    assert (indexed.subseed, indexed.subseed_strength, indexed.ensd, indexed.key) == (
        123, 0.3, 31337, original.key)
    # Then a rerun there reproduces every pixel
    result = sdfarm(other, "rerun", indexed.id)
    assert result.exit_code == 0, result.output
    assert "identical: every pixel matches the original" in result.stdout


def test_given_a_novelai_style_a1111_image_with_ensd_when_indexed_then_it_reruns_with_it(
        settings, cli_env, tiny_model, tmp_path):
    # Given an image whose only record is its A1111 text, with ENSD: 31337 (as NovelAI-style
    # A1111 images carry it)
    job = JOB.replace("subseed = 123\nsubseed_strength = 0.3\n", "")
    assert sdfarm(cli_env, "render", write_job(tmp_path, job), "-q").exit_code == 0
    made = only_job(settings.database_url)
    text = read_png_text(Path(made.output_path).read_bytes())["parameters"]
    assert text.rstrip().split(", Version:")[0].endswith("ENSD: 31337")
    info = PngInfo()
    info.add_text("parameters", text)
    buf = io.BytesIO()
    with Image.open(made.output_path) as im:
        im.convert("RGB").save(buf, format="PNG", pnginfo=info)
    imported = tmp_path / "novelai" / "00001.png"
    imported.parent.mkdir()
    imported.write_bytes(buf.getvalue())
    # When it is indexed into another database
    other = {**cli_env, "SDFARM_DATABASE_URL": f"sqlite:///{tmp_path / 'other.db'}"}
    assert sdfarm(other, "index", imported.parent, "-q").exit_code == 0
    indexed = only_job(other["SDFARM_DATABASE_URL"])
    assert indexed.ensd == 31337 and not (indexed.extra_params or {}).get("ENSD")
    # Then a rerun renders it with ENSD: every pixel as it was
    result = sdfarm(other, "rerun", indexed.id)
    assert result.exit_code == 0, result.output
    assert "identical: every pixel matches the original" in result.stdout
