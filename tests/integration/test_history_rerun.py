"""``sdfarm rerun JOB_ID --set key=value``: a past job rendered again with some parameters
changed, into a sweep linked to it; and reruns of images indexed from other tools."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner
from PIL import Image
from sqlalchemy import func, select

from sdfarm.cli.main import cli
from sdfarm.db.engine import session_factory
from sdfarm.db.models import Job, JobStatus, Sweep
from tests.conftest import write_job
from tests.integration.test_index import FIXTURES, png


def sdfarm(env: dict, *args):
    return CliRunner().invoke(cli, [str(a) for a in args], env=env)


def render_one(cli_env, tmp_path) -> None:
    job = write_job(tmp_path, 'model = "builtin:tiny"\nprompt = "a red boat, at sea"\nsteps = 3\n'
                              'cfg = 7\nwidth = 64\nheight = 64\nseeds = [11]\n')
    result = sdfarm(cli_env, "render", job, "-q")
    assert result.exit_code == 0, result.output


def sweeps(url: str) -> int:
    with session_factory(url)() as session:
        return session.scalar(select(func.count()).select_from(Sweep))


def test_set_renders_the_job_again_with_the_changes_into_a_linked_sweep(settings, cli_env, tiny_model, tmp_path):
    render_one(cli_env, tmp_path)
    result = sdfarm(cli_env, "rerun", 1, "--set", "steps=4", "--set", "width=72",
                    "--set", "prompt=a blue boat, at dawn")
    assert result.exit_code == 0, result.output
    assert "rendered with steps=4 (was 3), width=72 (was 64), prompt=a blue boat, at dawn (was a red boat, at sea)" in result.stdout
    with session_factory(settings.database_url)() as session:
        original, new = session.get(Job, 1), session.get(Job, 2)
        sweep = session.get(Sweep, new.sweep_id)
        assert (sweep.kind, sweep.rerun_of_job_id) == ("rerun", 1)
        assert new.status == JobStatus.done
        assert (new.steps, new.width, new.prompt) == (4, 72, "a blue boat, at dawn")
        # everything not set is the original's
        assert (new.seed, new.cfg, new.height, new.sampler, new.model_hash) == (
            original.seed, original.cfg, original.height, original.sampler, original.model_hash)
        assert new.key != original.key
    with Image.open(new.output_path) as im:
        assert im.size == (72, 64)


def test_bad_set_values_are_refused_naming_the_key_and_nothing_is_recorded(settings, cli_env, tiny_model, tmp_path):
    render_one(cli_env, tmp_path)
    for args, message in [
        (("--set", "colour=red"), "Error: --set: colour: cannot be set; settable: model, vae, prompt, "
                                  "negative_prompt, sampler, seed, subseed, subseed_strength, steps, cfg, "
                                  "width, height, clip_skip, ensd, schedule, eta"),
        (("--set", "steps=0"), "Error: --set: steps: must be an integer from 1 to 1000, got 0"),
        (("--set", "width=70"), "Error: --set: width: must be a multiple of 8, got 70"),
        (("--set", "sampler=Restart"), "Error: --set: sampler: unknown sampler 'Restart'"),
        (("--set", "schedule=Karras"), ("Error: --set: schedule: sampler 'Euler a' cannot run "
                                        "schedule 'Karras' (diffusers has no such option for "
                                        "it); Euler a runs: Automatic, SGM Uniform")),
        (("--set", "sampler=DPM2 a", "--set", "eta=0.5"),
         "Error: --set: eta: sampler 'DPM2 a' draws its noise with a fixed eta of 1"),
        (("--set", "sampler=DPM++ 2M Karras", "--set", "schedule=Beta"),
         "Error: --set: schedule: 'Beta' contradicts sampler 'DPM++ 2M Karras'"),
        (("--set", "steps"), "Error: --set: steps: is not key=value"),
    ]:
        result = sdfarm(cli_env, "rerun", 1, *args)
        assert result.exit_code == 1 and result.stderr.startswith(message), (args, result.stderr)
    assert sweeps(settings.database_url) == 1


def test_an_imported_image_is_rerun_once_its_sampler_and_model_are_ones_sdfarm_has(
        settings, cli_env, tiny_model, tmp_path):
    # Given an image from Forge, made with a schedule sdfarm cannot render and a model that is
    # not on this machine
    forge = (FIXTURES / "forge_unknown_sampler.txt").read_text("utf-8")
    assert "Schedule type: Exponential" in forge
    png(tmp_path / "forge" / "sailor.png", forge.replace("Exponential", "Align Your Steps"))
    assert sdfarm(cli_env, "index", tmp_path / "forge", "-q").exit_code == 0
    # Then a plain rerun says what it cannot do and how to get past it, recording nothing
    unknown = sdfarm(cli_env, "rerun", 1)
    assert unknown.exit_code == 1
    assert unknown.stderr.startswith("Error: job 1 was made with schedule 'Align Your Steps', "
                                     "which sdfarm cannot render; choose one with --set "
                                     "schedule=NAME: Automatic, Karras, ")
    no_model = sdfarm(cli_env, "rerun", 1, "--set", "sampler=DPM++ 2M Karras")
    assert no_model.exit_code == 1
    assert no_model.stderr.startswith("Error: job 1: model 'juggernautXL_v9'")
    assert no_model.stderr.strip().endswith("point it at the weights with --set model=PATH")
    assert sweeps(settings.database_url) == 1
    # And with both set it renders, keeping the image's prompt and seed
    result = sdfarm(cli_env, "rerun", 1, "--set", "sampler=Euler", "--set", "schedule=Karras",
                    "--set", "model=builtin:tiny",
                    "--set", "width=64", "--set", "height=64", "--set", "steps=2")
    assert result.exit_code == 0, result.output
    rows = json.loads(sdfarm(cli_env, "history", "--sweep", 2, "--json").stdout)
    assert [(r["prompt"], r["seed"], r["sampler"], r["schedule"], r["model"], r["status"])
            for r in rows] == [("portrait of an old sailor, weathered face, rim light", 77, "Euler",
                                "Karras", "builtin:tiny", "done")]
    assert len(rows[0]["model_hash"]) == 10 and Path(rows[0]["output_path"]).is_file()


def test_an_image_made_with_a_sampler_sdfarm_lacks_names_the_samplers_it_has(
        settings, cli_env, tmp_path):
    png(tmp_path / "sdnext" / "city.png", (FIXTURES / "sdnext_restart.txt").read_text("utf-8"))
    assert sdfarm(cli_env, "index", tmp_path / "sdnext", "-q").exit_code == 0
    unknown = sdfarm(cli_env, "rerun", 1)
    assert unknown.exit_code == 1
    assert unknown.stderr.startswith("Error: job 1 was made with sampler 'Restart', which sdfarm "
                                     "cannot render; choose one with --set sampler=NAME: Euler, ")
    assert sweeps(settings.database_url) == 1


def test_a_job_with_a_schedule_and_eta_reruns_identically_and_set_eta_changes_it(
        settings, cli_env, tiny_model, tmp_path):
    # Given a DDIM job with eta and the trailing (SGM Uniform) schedule
    job = write_job(tmp_path, 'model = "builtin:tiny"\nprompt = "a red boat"\nsteps = 3\n'
                              'width = 64\nheight = 64\nseeds = [11]\nsampler = "DDIM"\n'
                              'schedule = "SGM Uniform"\neta = 0.8\n')
    assert sdfarm(cli_env, "render", job, "-q").exit_code == 0
    # When it is rerun as it was, the pixels are identical
    same = sdfarm(cli_env, "rerun", 1)
    assert same.exit_code == 0, same.output
    assert "identical: every pixel matches the original" in same.stdout
    # And with another eta or schedule, the new job records it and its key differs
    changed = sdfarm(cli_env, "rerun", 1, "--set", "eta=0", "--set", "schedule=Automatic")
    assert changed.exit_code == 0, changed.output
    with session_factory(settings.database_url)() as session:
        original, new = session.get(Job, 1), session.get(Job, 3)
        assert (original.schedule, original.eta) == ("SGM Uniform", 0.8)
        assert (new.sampler, new.schedule, new.eta) == ("DDIM", "Automatic", 0.0)
        assert new.key != original.key
        with Image.open(original.output_path) as a, Image.open(new.output_path) as b:
            assert a.tobytes() != b.tobytes()


def test_an_imported_eta_that_diffusers_cannot_honour_is_refused_not_ignored(
        settings, cli_env, tmp_path):
    # Given an A1111 image made with DPM2 a at eta 0.5 (diffusers fixes its eta at 1)
    png(tmp_path / "a1111" / "eta.png",
        "a cat\nSteps: 3, Sampler: DPM2 a, Schedule type: Automatic, CFG scale: 7, Seed: 3, "
        "Size: 64x64, Model: builtin:tiny, Eta: 0.5")
    assert sdfarm(cli_env, "index", tmp_path / "a1111", "-q").exit_code == 0
    # Then a rerun says so, recording nothing
    result = sdfarm(cli_env, "rerun", 1)
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: job 1: sampler 'DPM2 a' draws its noise with a fixed "
                                    "eta of 1")
    assert "rerun it with --set eta=none" in result.stderr and sweeps(settings.database_url) == 1


def test_a_rerun_names_the_recorded_settings_it_cannot_apply_and_notes_them_on_the_new_job(
        settings, cli_env, tiny_model, tmp_path):
    # Given an A1111 image made with a hires pass through an ESRGAN upscaler, which sdfarm
    # lacks (a LoRA and a latent or Lanczos hires fix it has since issue 11:
    # tests/integration/test_lora_render.py, test_hires.py)
    png(tmp_path / "a1111" / "hires.png",
        "a red boat, at sea\nSteps: 2, Sampler: Euler, CFG scale: 7, Seed: 3, "
        "Size: 64x64, Model: builtin:tiny, Denoising strength: 0.45, Hires upscale: 2, "
        'Hires upscaler: R-ESRGAN 4x+, Version: v1.10.1')
    assert sdfarm(cli_env, "index", tmp_path / "a1111", "-q").exit_code == 0
    # When it is rerun
    result = sdfarm(cli_env, "rerun", 1)
    assert result.exit_code == 0, result.output
    # Then one line on stderr names what the rerun left out (not the version: it changes no pixel)
    assert ("rerun of job 1 cannot apply: Denoising strength, Hires upscale, Hires upscaler"
            ) in result.stderr.splitlines()
    # And the new job records it
    with session_factory(settings.database_url)() as session:
        new = session.get(Job, 2)
        assert new.status == JobStatus.done
        assert new.extra_params == {"Not applied": "Denoising strength, Hires upscale, "
                                                   "Hires upscaler"}
    # And a rerun of the rerun, or of a job sdfarm rendered, warns of nothing
    again = sdfarm(cli_env, "rerun", 2)
    assert again.exit_code == 0, again.output
    assert "cannot apply" not in again.stderr


def test_an_image_that_does_not_say_its_sampler_asks_for_one(settings, cli_env, tmp_path):
    # Given an SD.Next image that left "Sampler:" out
    text = (FIXTURES / "sdnext_restart.txt").read_text("utf-8").replace("Sampler: Restart, ", "")
    png(tmp_path / "sdnext" / "city.png", text)
    assert sdfarm(cli_env, "index", tmp_path / "sdnext", "-q").exit_code == 0
    result = sdfarm(cli_env, "rerun", 1)
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: job 1 does not say which sampler made it (its image "
                                    "did not record one); choose one with --set sampler=NAME: Euler, ")
    assert sweeps(settings.database_url) == 1
