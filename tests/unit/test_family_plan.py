"""Each image takes its model's family: the family's defaults where the job file is silent,
refusals (naming the key) where the family cannot render a parameter, and a job file's own
``family =`` / ``prediction =`` over what the files say. Pure: built-in models' families are
known without their files, and a detected file is given as (family, prediction)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from sdfarm.errors import JobFileError
from sdfarm.modelref import BUILTIN_FAMILIES
from sdfarm.scheduler.jobfile import parse_job_file
from sdfarm.scheduler.plan import make_plan
from sdfarm.scheduler.prepare import plan_job, resolve_model


def plan_of(text: str, tmp_path, families=None):
    job = parse_job_file('prompt = "a cat"\n' + text, str(tmp_path / "job.toml"))
    if families is not None:
        return make_plan(job, None, {m: None for m in families}, None, families)
    job, mref = resolve_model(job, tmp_path / "models")
    return plan_job(job, mref, tmp_path / "models")


def sizes_steps_cfg(spec):
    return spec.width, spec.height, spec.steps, spec.cfg, spec.sampler


@pytest.mark.parametrize("model, expected", [
    ("builtin:tiny", (512, 512, 20, 7.0, "Euler a")),
    ("builtin:tiny-sd2v", (768, 768, 20, 7.0, "Euler a")),
    ("builtin:tiny-sdxl", (1024, 1024, 20, 7.0, "Euler a")),
    ("builtin:tiny-flux", (1024, 1024, 28, 1.0, "Euler")),
    ("builtin:tiny-sd3", (1024, 1024, 28, 4.5, "Euler")),
])
def test_a_silent_job_file_takes_its_models_family_defaults(tmp_path, model, expected):
    [spec] = plan_of(f'model = "{model}"\n', tmp_path).specs
    assert sizes_steps_cfg(spec) == expected
    assert (spec.family, spec.prediction) == BUILTIN_FAMILIES[model.removeprefix("builtin:")]


def test_flux_dev_gets_distilled_guidance_and_schnell_four_steps_without_cfg(tmp_path):
    [dev] = plan_of('model = "dev.safetensors"\n', tmp_path,
                    {"dev.safetensors": ("flux-dev", "flow")}).specs
    [schnell] = plan_of('model = "s.safetensors"\n', tmp_path,
                        {"s.safetensors": ("flux-schnell", "flow")}).specs
    assert (dev.guidance, dev.steps, dev.cfg) == (3.5, 28, 1.0)
    assert (schnell.guidance, schnell.steps, schnell.cfg) == (None, 4, 1.0)


def test_what_the_file_sets_is_never_replaced_by_a_family_default(tmp_path):
    [spec] = plan_of('model = "builtin:tiny-sdxl"\nwidth = 832\nsteps = 30\nsampler = "DPM++ 2M"\n',
                     tmp_path).specs
    assert (spec.width, spec.height, spec.steps, spec.cfg, spec.sampler) == (832, 1024, 30, 7.0,
                                                                             "DPM++ 2M")


def test_a_mixed_model_axis_gives_each_cell_its_own_familys_size_and_never_mixes_batches(tmp_path):
    plan = plan_of('model = "builtin:tiny"\nseeds = "1-3"\nbatch_size = 8\n'
                   '[axes]\nx = { model = "builtin:tiny, builtin:tiny-sdxl" }\n', tmp_path)
    by_model = {s.model: (s.family, s.width) for s in plan.specs}
    assert by_model == {"builtin:tiny": ("sd1", 512), "builtin:tiny-sdxl": ("sdxl", 1024)}
    for batch in plan.batches:
        assert len({plan.specs[i].family for i in batch}) == 1
    models = [s.model for s in plan.specs]
    assert models == sorted(models, key=models.index), "model outermost: one run per model"


def test_a_size_axis_keeps_its_sizes_on_every_family(tmp_path):
    plan = plan_of('model = "builtin:tiny"\n[axes]\nx = { model = "builtin:tiny, builtin:tiny-sdxl" }\n'
                   'y = { size = "64x64, 128x128" }\n', tmp_path)
    assert {(s.family, s.width) for s in plan.specs} == {("sd1", 64), ("sd1", 128),
                                                        ("sdxl", 64), ("sdxl", 128)}


@pytest.mark.parametrize("body, key, words", [
    ('model = "builtin:tiny-flux"\nsampler = "DPM++ 2M"\n', "sampler", "'DPM++ 2M' does not apply"),
    ('model = "builtin:tiny-flux"\nwidth = 1000\n', "width", "multiple of 16"),
    ('model = "builtin:tiny-flux"\nnegative_prompt = "blurry"\n', "negative_prompt", "cfg above 1"),
    ('model = "builtin:tiny-sdxl"\nclip_skip = 2\n', "clip_skip", ""),
    ('model = "builtin:tiny-sd3"\nsampler = "Euler"\nschedule = "Karras"\n', "schedule",
     "Automatic"),
    ('model = "builtin:tiny"\nguidance = 3.0\n', "guidance", ""),
    ('model = "builtin:tiny-sdxl"\nprediction = "flow"\n', "prediction", "epsilon, v"),
])
def test_a_parameter_the_family_cannot_render_is_refused_naming_the_key_and_model(tmp_path, body,
                                                                                 key, words):
    with pytest.raises(JobFileError) as error:
        plan_of(body, tmp_path)
    assert error.value.key == key
    assert words in error.value.problem and "(model 'builtin:tiny" in error.value.problem


def test_a_refusal_brought_by_an_axis_names_the_axis(tmp_path):
    with pytest.raises(JobFileError) as error:
        plan_of('model = "builtin:tiny-flux"\n[axes]\nx = { sampler = "Euler, DPM++ 2M" }\n', tmp_path)
    assert error.value.key == "axes.x.sampler"
    with pytest.raises(JobFileError) as error:
        plan_of('model = "builtin:tiny"\nsampler = "DPM++ 2M"\n'
                '[axes]\nx = { model = "builtin:tiny, builtin:tiny-flux" }\n', tmp_path)
    assert error.value.key == "sampler" and "Flux.1-dev" in error.value.problem


def test_a_job_files_family_and_prediction_override_what_the_files_say(tmp_path):
    [spec] = plan_of('model = "builtin:tiny"\nfamily = "sdxl"\n', tmp_path).specs
    assert (spec.family, spec.prediction, spec.width) == ("sdxl", "epsilon", 1024)
    [spec] = plan_of('model = "builtin:tiny-sdxl"\nprediction = "v"\n', tmp_path).specs
    assert (spec.family, spec.prediction) == ("sdxl", "v")
    [spec] = plan_of('model = "m.safetensors"\n', tmp_path, {"m.safetensors": ("sd2", "v")}).specs
    assert spec.width == 768, "SD 2.x v-prediction's own size"


def test_an_unknown_family_name_is_refused_listing_the_families(tmp_path):
    with pytest.raises(JobFileError) as error:
        plan_of('model = "builtin:tiny"\nfamily = "sd4"\n', tmp_path)
    assert error.value.key == "family" and "sdxl" in error.value.problem


def test_a_pickle_checkpoint_needs_its_family_said(tmp_path):
    (tmp_path / "old.ckpt").write_bytes(b"not read")
    body = 'model = "old.ckpt"\nallow_pickle = true\n'
    with pytest.raises(JobFileError) as error:
        plan_of(body, tmp_path)
    assert error.value.key == "model" and "set family =" in error.value.problem
    [spec] = plan_of(body + 'family = "sdxl"\n', tmp_path).specs
    assert (spec.family, spec.width) == ("sdxl", 1024)


def test_a_hub_model_not_cached_plans_with_its_family_said_unless_nothing_can_download_it(
        tmp_path, monkeypatch):
    """Plan fails where render would: offline, an uncached hub model cannot load."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty cache
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    body = 'model = "sdfarm-tests/not-cached"\nfamily = "sd1"\n'
    [spec] = plan_of(body, tmp_path).specs  # online: render downloads it
    assert spec.family == "sd1"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(JobFileError) as error:
        plan_of(body, tmp_path)
    assert error.value.key == "model"
    assert "not in the Hugging Face cache here and HF_HUB_OFFLINE is set" in error.value.problem


def test_guidance_and_shift_are_grid_axes_that_enter_each_images_key(tmp_path):
    plan = plan_of('model = "builtin:tiny-flux"\nwidth = 64\nheight = 64\n'
                   '[axes]\nx = { guidance = "2, 3.5, 5" }\ny = { shift = "1, 3" }\n', tmp_path)
    assert sorted({(s.guidance, s.shift) for s in plan.specs}) == [
        (g, s) for g in (2.0, 3.5, 5.0) for s in (1.0, 3.0)]
    assert len({s.key for s in plan.specs}) == 6


def test_plan_prints_each_models_family_and_the_defaults_it_brings(tmp_path):
    from sdfarm.cli.main import cli

    job = tmp_path / "job.toml"
    job.write_text('prompt = "a cat"\nmodel = "builtin:tiny"\n'
                   '[axes]\nx = { model = "builtin:tiny, builtin:tiny-flux" }\n')
    env = {"SDFARM_DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite'}",
           "SDFARM_MODEL_DIR": str(tmp_path / "models")}
    text = CliRunner().invoke(cli, ["plan", str(job)], env=env, catch_exceptions=False).output
    assert "builtin:tiny-flux: Flux.1-dev (flux-dev); defaults 1024x1024, 28 steps, cfg 1, Euler, " \
           "guidance 3.5" in text
    assert "builtin:tiny: SD 1.x (sd1); defaults 512x512" in text
    data = json.loads(CliRunner().invoke(cli, ["plan", "--json", str(job)], env=env).output)
    assert {m["model"]: m["family"] for m in data["models"]} == {"builtin:tiny": "sd1",
                                                                 "builtin:tiny-flux": "flux-dev"}
