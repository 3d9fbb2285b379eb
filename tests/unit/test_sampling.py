"""Samplers, schedule types and eta: what a job file, an axis and ``--set`` accept, what they
refuse in one line, and how the infotext writes and reads them (A1111 >= 1.9)."""

from __future__ import annotations

import inspect
import json

import pytest

from sdfarm.errors import JobFileError
from sdfarm.metadata.a1111 import a1111_parameters, infotext_settings, sdfarm_chunk
from sdfarm.metadata.generation import generation_from_chunks
from sdfarm.samplers import (
    AUTOMATIC,
    LEGACY_COMBINED,
    SAMPLERS,
    SCHEDULES,
    scheduler_options,
    split_sampler,
)
from sdfarm.scheduler.expand import expand
from sdfarm.scheduler.jobfile import parse_job_file
from sdfarm.scheduler.overrides import apply_overrides, parse_assignments
from sdfarm.spec import RenderSpec

JOB = 'model = "builtin:tiny"\nprompt = "a cat"\nseeds = [1]\n'
SPEC = RenderSpec(model="builtin:tiny", prompt="a cat", seed=3, model_hash="0123456789")


def parse(text: str):
    return parse_job_file(JOB + text, "job.toml")


def error_of(text: str) -> str:
    with pytest.raises(JobFileError) as info:
        parse(text)
    message = str(info.value)
    assert "\n" not in message and message.startswith("job.toml: ")
    return message


# --- the tables -------------------------------------------------------------------------

def test_given_diffusers_signatures_then_each_sampler_lists_exactly_the_schedules_it_can_take():
    diffusers = pytest.importorskip("diffusers")
    for name, sampler in SAMPLERS.items():
        cls = getattr(diffusers, sampler.scheduler_class)
        accepted = set(inspect.signature(cls.__init__).parameters)
        assert set(sampler.options) <= accepted, name
        can = {s for s, schedule in SCHEDULES.items() if set(schedule.options) <= accepted}
        assert set(sampler.schedules) == can, name


def test_given_diffusers_signatures_then_eta_is_used_only_where_the_step_takes_it():
    diffusers = pytest.importorskip("diffusers")
    for name, sampler in SAMPLERS.items():
        step = inspect.signature(getattr(diffusers, sampler.scheduler_class).step).parameters
        assert ("eta" in step) == (sampler.eta == "ddim"), name
        if sampler.eta == "unused":
            assert not sampler.stochastic, f"{name}: eta is a no-op only on a deterministic one"


def test_every_a1111_sampler_named_in_the_issue_that_diffusers_can_run_is_offered():
    assert {"DPM++ 3M SDE", "DPM++ 2M SDE Heun", "LCM", "DDPM"} <= set(SAMPLERS)
    assert {"Automatic", "Karras", "Exponential", "SGM Uniform", "Beta"} == set(SCHEDULES)
    # Not in diffusers: no ancestral single-step DPM++, no Restart; no faithful Uniform.
    assert not {"DPM++ 2S a", "Restart"} & set(SAMPLERS) and "Uniform" not in SCHEDULES


def test_a_pair_adds_the_schedule_options_to_the_sampler_options():
    assert scheduler_options("DPM++ 3M SDE", "Karras") == (
        "DPMSolverMultistepScheduler",
        {"algorithm_type": "sde-dpmsolver++", "solver_order": 3, "use_karras_sigmas": True})
    assert scheduler_options("DDIM", "SGM Uniform")[1] == {"timestep_spacing": "trailing"}


@pytest.mark.parametrize("combined", list(LEGACY_COMBINED))
def test_every_old_combined_name_still_means_its_sampler_and_schedule(combined):
    assert split_sampler(combined.upper()) == LEGACY_COMBINED[combined]


# --- job files ----------------------------------------------------------------------------

def test_given_a_schedule_key_then_the_base_spec_has_it():
    base = parse('sampler = "DPM++ 2M"\nschedule = "karras"\n').base
    assert (base.sampler, base.schedule, base.eta) == ("DPM++ 2M", "Karras", None)


def test_given_a_combined_name_then_it_sets_sampler_and_schedule_and_the_old_key():
    combined = parse('sampler = "DPM++ 2M Karras"\n').base
    split = parse('sampler = "DPM++ 2M"\nschedule = "Karras"\n').base
    assert combined == split
    also = parse('sampler = "DPM++ 2M Karras"\nschedule = "Karras"\n').base
    assert also == split


def test_given_a_combined_name_and_another_schedule_then_one_line_names_the_schedule_key():
    message = error_of('sampler = "DPM++ 2M Karras"\nschedule = "Exponential"\n')
    assert message.startswith("job.toml: schedule: ") and "contradicts" in message


def test_given_a_pair_diffusers_cannot_run_then_it_is_refused_listing_what_can():
    message = error_of('sampler = "DDIM"\nschedule = "Karras"\n')
    assert message.startswith("job.toml: schedule: ")
    assert "DDIM runs: Automatic, SGM Uniform" in message
    assert error_of('sampler = "Euler a Karras"\n').startswith("job.toml: sampler: ")


def test_given_an_unknown_schedule_then_the_known_ones_are_listed():
    message = error_of('schedule = "Uniform"\n')
    assert message.startswith("job.toml: schedule: unknown schedule 'Uniform'")
    assert "Karras" in message


def test_given_a_grid_of_schedule_by_sampler_then_every_pair_is_a_cell():
    job = parse('[axes]\nx = { sampler = ["Euler", "DPM++ 2M"] }\n'
                'y = { schedule = ["Automatic", "Karras", "Exponential"] }\n')
    specs = expand(job)
    assert {(s.sampler, s.schedule) for s in specs} == {
        (a, b) for a in ("Euler", "DPM++ 2M") for b in ("Automatic", "Karras", "Exponential")}
    assert job.axes[1].labels == ("Schedule type: Automatic", "Schedule type: Karras",
                                  "Schedule type: Exponential")


def test_given_a_grid_pair_diffusers_cannot_run_then_the_axis_key_is_named():
    message = error_of('[axes]\nx = { sampler = ["Euler", "DDIM"] }\n'
                       'y = { schedule = ["Automatic", "Beta"] }\n')
    assert message.startswith("job.toml: axes.y.schedule: sampler 'DDIM' cannot run schedule 'Beta'")


def test_given_combined_names_on_a_sampler_axis_then_labels_stay_as_written():
    job = parse('[axes]\nx = { sampler = ["DPM++ 2M", "DPM++ 2M Karras"] }\n')
    assert job.axes[0].labels == ("Sampler: DPM++ 2M", "Sampler: DPM++ 2M Karras")
    assert [(s.sampler, s.schedule) for s in expand(job)] == [
        ("DPM++ 2M", "Automatic"), ("DPM++ 2M", "Karras")]


def test_given_a_sampler_axis_then_the_sampler_key_and_its_schedule_are_not_used():
    # As before schedules were a parameter: the axis value replaces the whole name.
    job = parse('sampler = "DPM++ 2M Karras"\n[axes]\nx = { sampler = ["Euler", "DDIM"] }\n')
    assert [(s.sampler, s.schedule) for s in expand(job)] == [("Euler", "Automatic"),
                                                              ("DDIM", "Automatic")]


def test_given_combined_names_and_a_schedule_axis_then_the_conflict_is_one_line():
    assert error_of('[axes]\nx = { sampler = ["DPM++ 2M Karras"] }\n'
                    'y = { schedule = ["Beta"] }\n').startswith("job.toml: axes.x.sampler: ")
    assert error_of('sampler = "DPM++ 2M Karras"\n[axes]\ny = { schedule = ["Beta"] }\n'
                    ).startswith("job.toml: axes.y.schedule: ")
    assert error_of('schedule = "Beta"\n[axes]\nx = { sampler = ["DPM++ 2M Karras"] }\n'
                    ).startswith("job.toml: schedule: ")


def test_given_eta_then_it_is_a_number_from_0_to_1_on_ddim_and_deterministic_samplers():
    assert parse('sampler = "DDIM"\neta = 0.5\n').base.eta == 0.5
    assert parse('sampler = "Euler"\neta = 1\n').base.eta == 1.0
    assert error_of('sampler = "DDIM"\neta = 2\n').startswith(
        "job.toml: eta: must be a number from 0 to 1")


@pytest.mark.parametrize("sampler", [n for n, s in SAMPLERS.items() if s.eta == "fixed"])
def test_given_eta_on_a_sampler_whose_noise_diffusers_fixes_then_it_is_refused(sampler):
    message = error_of(f'sampler = "{sampler}"\neta = 0.5\n')
    assert message.startswith("job.toml: eta: ") and "DDIM" in message


def test_given_an_eta_axis_then_it_varies_eta_and_is_checked_against_the_sampler_axis():
    job = parse('sampler = "DDIM"\n[axes]\nx = { eta = "0-1 [3]" }\n')
    assert [s.eta for s in expand(job)] == [0.0, 0.5, 1.0]
    assert error_of('[axes]\nx = { eta = [0, 1] }\ny = { sampler = ["DDIM", "DPM2 a"] }\n'
                    ).startswith("job.toml: axes.x.eta: ")
    # Euler a takes eta too (the ancestral share of noise)
    both = parse('[axes]\nx = { eta = [0, 1] }\ny = { sampler = ["DDIM", "Euler a"] }\n')
    assert {(s.sampler, s.eta) for s in expand(both)} == {
        ("DDIM", 0.0), ("DDIM", 1.0), ("Euler a", 0.0), ("Euler a", 1.0)}


# --- rerun --set ----------------------------------------------------------------------------

def test_given_set_with_a_combined_name_then_both_change():
    spec = apply_overrides(SPEC, parse_assignments(["sampler=dpm++ 2m karras"]))
    assert (spec.sampler, spec.schedule) == ("DPM++ 2M", "Karras")


def test_given_set_sampler_alone_then_the_schedule_is_kept_and_checked():
    karras = SPEC.replace(sampler="DPM++ 2M", schedule="Karras")
    assert apply_overrides(karras, {"sampler": "Euler"}).schedule == "Karras"
    with pytest.raises(JobFileError, match=r"^--set: sampler: sampler 'DDIM' cannot run"):
        apply_overrides(karras, {"sampler": "DDIM"})
    spec = apply_overrides(karras, parse_assignments(["sampler=DDIM", "schedule=Automatic"]))
    assert (spec.sampler, spec.schedule) == ("DDIM", "Automatic")


def test_given_set_eta_then_it_is_checked_like_the_job_file():
    assert apply_overrides(SPEC.replace(sampler="DDIM"), parse_assignments(["eta=0.3"])).eta == 0.3
    assert apply_overrides(SPEC.replace(sampler="DDIM", eta=0.3),
                           parse_assignments(["eta=none"])).eta is None
    with pytest.raises(JobFileError, match=r"^--set: eta: "):
        apply_overrides(SPEC.replace(sampler="DPM2 a"), {"eta": 0.5})
    with pytest.raises(JobFileError, match=r"^--set: schedule: .* contradicts sampler"):
        apply_overrides(SPEC, {"sampler": "DPM++ 2M Karras", "schedule": "Beta"})


# --- infotext -------------------------------------------------------------------------------

def settings(spec: RenderSpec) -> dict[str, str]:
    return dict(infotext_settings(spec))


def test_the_schedule_is_written_apart_as_a1111_1_9_writes_it():
    line = a1111_parameters(SPEC.replace(sampler="DPM++ 2M", schedule="Karras")).splitlines()[-1]
    assert line.startswith("Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7")


def test_eta_is_written_only_when_set_as_eta_ddim_for_ddim_and_eta_otherwise():
    assert "Eta" not in settings(SPEC) and "Eta DDIM" not in settings(SPEC.replace(sampler="DDIM"))
    assert settings(SPEC.replace(sampler="DDIM", eta=0.5))["Eta DDIM"] == "0.5"
    assert settings(SPEC.replace(sampler="Euler", eta=0.25))["Eta"] == "0.25"


@pytest.mark.parametrize("spec", [
    SPEC.replace(sampler="DDIM", eta=0.5, schedule="SGM Uniform"),
    SPEC.replace(sampler="Euler", eta=0.0),
    SPEC.replace(sampler="DPM++ 3M SDE", schedule="Exponential"),
    SPEC.replace(sampler="LCM", schedule="SGM Uniform"),
    SPEC.replace(sampler="DPM++ 2M SDE Heun", schedule="Beta"),
])
def test_each_control_round_trips_through_the_infotext_and_the_sdfarm_chunk(spec):
    from_text = generation_from_chunks({"parameters": a1111_parameters(spec)})
    assert from_text.spec == spec and from_text.spec.key == spec.key and from_text.extra == {}
    from_chunk = generation_from_chunks({"sdfarm": sdfarm_chunk(spec, job_id=1)})
    assert from_chunk.spec == spec


def test_given_an_sdfarm_chunk_written_before_schedules_then_the_combined_name_is_split():
    spec = SPEC.replace(sampler="DPM++ 2M", schedule="Karras")
    data = json.loads(sdfarm_chunk(spec, job_id=1))
    data["spec"]["sampler"] = "DPM++ 2M Karras"
    del data["spec"]["schedule"], data["spec"]["eta"]
    old = generation_from_chunks({"sdfarm": json.dumps(data)}).spec
    assert old == spec and old.key == data["key"]


def test_given_an_a1111_eta_ddim_then_it_is_read_as_eta():
    text = ("a cat\nSteps: 20, Sampler: DDIM, Schedule type: Automatic, CFG scale: 7, Seed: 3, "
            "Size: 512x512, Model: m, Eta DDIM: 0.2")
    gen = generation_from_chunks({"parameters": text})
    assert (gen.spec.sampler, gen.spec.eta, gen.extra) == ("DDIM", 0.2, {})


def test_default_schedule_constant_is_the_spec_default():
    assert RenderSpec(model="m", prompt="p", seed=1).schedule == AUTOMATIC


def test_given_a_bad_eta_axis_item_then_the_error_shows_eta_syntax():
    message = error_of('sampler = "DDIM"\n[axes]\nx = { eta = "0-" }\n')
    assert message.startswith("job.toml: axes.x.eta: '0-' is not a value or a range; "
                              "eta takes numbers from 0 to 1")
