"""The hires fix and img2img in a job file, the plan and the infotext, without torch: the
``hires`` table, which settings need which, the render order that lets cells share their first
pass, and A1111's infotext keys both ways."""

from __future__ import annotations

import pytest

from sdfarm.errors import JobFileError
from sdfarm.metadata.a1111 import a1111_parameters
from sdfarm.metadata.generation import generation_from_infotext
from sdfarm.metadata.infotext import parse_infotext
from sdfarm.scheduler.jobfile import parse_job_file
from sdfarm.scheduler.plan import make_plan
from sdfarm.spec import RenderSpec
from sdfarm.worker.hires import first_pass_spec, hires_size, second_pass_steps

FILE = "jobs/hires.toml"
HEAD = 'model = "builtin:tiny"\nprompt = "a lighthouse"\n'


def job(body: str):
    return parse_job_file(HEAD + body, FILE)


def problem(body: str) -> str:
    with pytest.raises(JobFileError) as info:
        job(body)
    return str(info.value)


def test_the_hires_table_sets_the_hires_parameters_with_a1111_defaults():
    base = job('hires = { scale = 1.5, steps = 10, denoise = 0.45, upscaler = "lanczos" }').base
    assert (base.hires_scale, base.hires_steps, base.hires_denoise, base.hires_upscaler) == (
        1.5, 10, 0.45, "Lanczos")
    # Left out: scale 2, steps as the first pass's, denoise 0.7, the latent upscaler
    base = job("hires = {}").base
    assert (base.hires_scale, base.hires_steps, base.hires_denoise, base.hires_upscaler) == (
        2.0, 0, 0.7, "Latent")
    assert job("").base.hires_scale == 0  # no table: no hires fix


@pytest.mark.parametrize("body, message", [
    ("hires = 2", f"{FILE}: hires: must be a table, like {{ scale = 2, steps = 10, denoise = "
                  '0.5, upscaler = "latent" }; got an integer 2'),
    ("hires = { scale = 2, strength = 0.5 }", f"{FILE}: hires.strength: unknown key; allowed: "
                                              "scale, steps, denoise, upscaler"),
    ("hires = { denoise = 1.5 }", f"{FILE}: hires.denoise: must be a number from 0 to 1, got "
                                  "a number 1.5"),
    ("hires = { scale = 0 }", f"{FILE}: hires.scale: must be above 0"),
    ('hires = { upscaler = "ESRGAN_4x" }', f"{FILE}: hires.upscaler: 'ESRGAN_4x' is not a hires "
                                           "fix upscaler; allowed: Latent, Lanczos"),
    ("hires_steps = 5\nhires = { scale = 2 }", f"{FILE}: hires_steps: is set by the hires table "
                                               "already"),
    ("hires_denoise = 0.5", f"{FILE}: hires_denoise: applies to the hires fix, which is off; "
                            "turn it on with hires = { scale = 2 }"),
    ('[axes]\nx = { hires_steps = "5, 10" }', f"{FILE}: axes.x.hires_steps: applies to the hires "
                                              "fix, which is off"),
    ("denoise = 0.5", f"{FILE}: denoise: applies to img2img only; set init_image"),
    ('[axes]\ny = { denoise = "0.3, 0.6" }', f"{FILE}: axes.y.denoise: applies to img2img only"),
    ('init_image = "a.png"\nhires = {}', f"{FILE}: init_image: img2img has no hires fix"),
    ('init_image = "a.png"\nensd = 31337', f"{FILE}: ensd: does not apply to img2img"),
    ('init_image = "a.png"\n[axes]\nx = { subseed_strength = "0, 0.5" }',
     f"{FILE}: axes.x.subseed_strength: does not apply to img2img"),
])
def test_hires_and_img2img_settings_that_would_change_nothing_are_one_line_errors(body, message):
    assert problem(body).startswith(message)


def test_a_hires_scale_axis_with_0_compares_no_hires_fix_with_hires_fixes():
    plan = make_plan(job('seeds = [1]\nhires_denoise = 0.4\n[axes]\nx = { hires_scale = "0, 1.5, 2" }'))
    scales = sorted((s.hires_scale, s.hires_denoise) for s in plan.specs)
    # The cell without a hires fix has no hires settings: its key is the plain image's
    assert scales == [(0.0, 0.7), (1.5, 0.4), (2.0, 0.4)]
    plain = make_plan(job("seeds = [1]")).specs[0]
    assert next(s for s in plan.specs if s.hires_scale == 0).key == plain.key


def test_cells_that_differ_only_in_hires_settings_render_one_after_another():
    # Given a grid where the hires denoise varies inside a cfg axis
    plan = make_plan(job('seeds = [1, 2]\nbatch_size = 4\nhires = { scale = 2 }\n[axes]\n'
                         'x = { hires_denoise = "0.3, 0.5" }\ny = { cfg = "5, 7" }'))
    # Then each batch holds one hires setting, and the batches of one first pass are adjacent
    first_passes = []
    for batch in plan.batches:
        specs = [plan.specs[i] for i in batch]
        assert len({(s.hires_denoise, s.cfg) for s in specs}) == 1
        first_passes.append(tuple(first_pass_spec(s).key for s in specs))
    assert first_passes[0] == first_passes[1] and first_passes[2] == first_passes[3]
    assert first_passes[1] != first_passes[2]


def test_hires_and_img2img_settings_enter_the_key_and_the_batch_group_only_when_on():
    plain = RenderSpec(model="m", prompt="p", seed=1)
    hires = plain.replace(hires_scale=2.0)
    assert hires.key != plain.key and hires.batch_group != plain.batch_group
    assert hires.replace(hires_denoise=0.5).key != hires.key
    # Without a hires fix or an init image, their other settings are normalized away
    assert plain.replace(hires_denoise=0.5, denoise=0.3).normalized().key == plain.key
    # The init image enters by its content's hash, not its path
    a = plain.replace(init_image="/x/a.png", init_image_hash="ab" * 32)
    assert a.key == a.replace(init_image="/y/copy.png").key != plain.key
    assert a.replace(init_image_hash="cd" * 32).key != a.key


def test_hires_settings_are_written_and_read_back_under_a1111s_keys():
    spec = RenderSpec(model="v1-5", prompt="a lighthouse", seed=5, steps=3, width=64,
                      height=64, hires_scale=2.0, hires_steps=10, hires_denoise=0.45,
                      hires_upscaler="Lanczos")
    text = a1111_parameters(spec)
    assert text.endswith("Model: v1-5, Denoising strength: 0.45, Hires upscale: 2, "
                         "Hires steps: 10, Hires upscaler: Lanczos")
    read = generation_from_infotext(parse_infotext(text))
    assert read.spec == spec and read.extra == {}
    # At its defaults, A1111 still writes the denoise and the upscaler, but not 0 hires steps
    defaults = a1111_parameters(spec.replace(hires_steps=0, hires_denoise=0.7,
                                             hires_upscaler="Latent"))
    assert defaults.endswith("Denoising strength: 0.7, Hires upscale: 2, Hires upscaler: Latent")


def test_an_a1111_image_keeps_hires_settings_sdfarm_cannot_render_as_written():
    line = ("a lighthouse\nSteps: 20, Sampler: Euler a, Schedule type: Automatic, CFG scale: 7, "
            "Seed: 5, Size: 512x512, Model: v1-5, Denoising strength: {denoise}{hires}")
    esrgan = generation_from_infotext(parse_infotext(line.format(
        denoise=0.4, hires=", Hires upscale: 2, Hires upscaler: R-ESRGAN 4x+")))
    assert esrgan.spec.hires_scale == 0
    assert esrgan.extra == {"Denoising strength": "0.4", "Hires upscale": "2",
                            "Hires upscaler": "R-ESRGAN 4x+"}
    # An img2img image's denoise, without its init image, is not a hires fix either
    img2img = generation_from_infotext(parse_infotext(line.format(denoise=0.75, hires="")))
    assert img2img.spec.hires_scale == 0 and img2img.extra == {"Denoising strength": "0.75"}


def test_the_img2img_denoise_is_written_as_denoising_strength():
    spec = RenderSpec(model="m", prompt="p", seed=1, init_image="/a.png", denoise=0.3)
    assert a1111_parameters(spec).endswith("Model: m, Denoising strength: 0.3")


@pytest.mark.parametrize("steps, denoise, schedule", [
    (10, 0.5, 20), (2, 0.7, 2), (2, 0.3, 6), (20, 1.0, 20), (20, 0.01, 1000), (3, 0.999, 3),
])
def test_the_second_pass_runs_hires_steps_at_the_end_of_a1111s_schedule(steps, denoise, schedule):
    length, strength = second_pass_steps(steps, denoise)
    assert length == schedule and int(length * strength) == min(steps, length)
    assert second_pass_steps(10, 0) == (0, 0.0)


def test_the_hires_size_is_a1111s_rounded_down_to_the_vae_factor():
    spec = RenderSpec(model="m", prompt="p", seed=1, width=64, height=72, hires_scale=1.5)
    assert hires_size(spec) == (96, 104)
    assert hires_size(spec.replace(hires_scale=0.1)) == (8, 8)
