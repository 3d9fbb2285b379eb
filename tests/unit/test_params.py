"""The parameter table: one entry per per-image parameter, and everything that reads a
parameter agrees with it."""

from __future__ import annotations

import dataclasses
import json

import pytest

from sdfarm.errors import JobFileError
from sdfarm.metadata.a1111 import infotext_settings
from sdfarm.params import MAX_SEED, PARAMS, BadValue
from sdfarm.samplers import LEGACY_COMBINED
from sdfarm.scheduler.axes import AXIS_PARAMS
from sdfarm.scheduler.jobfile import KNOWN_KEYS, parse_job_file
from sdfarm.scheduler.overrides import apply_overrides, parse_assignments
from sdfarm.spec import KEY_VERSION, PLAIN_KEY_VERSION, SPEC_FIELDS, RenderSpec

BASE = RenderSpec(model="builtin:tiny", prompt="a lighthouse at dusk", seed=1234,
                  model_hash="0123456789")


def test_render_spec_has_exactly_the_table_parameters_with_the_table_defaults():
    # Besides the model hash, the LoRA fields (issue 11) follow from the prompt's tags, and
    # the init image's hash (issue 11, img2img) is the identity of its file.
    assert set(SPEC_FIELDS) == {*PARAMS, "model_hash", "loras", "lora_hashes", "init_image_hash"}
    for field in dataclasses.fields(RenderSpec):
        if field.name in PARAMS and field.default is not dataclasses.MISSING:
            assert field.default == PARAMS[field.name].default, field.name


def test_the_key_is_pinned_so_a_change_of_its_layout_is_seen():
    # Changing this value means every earlier image stops being reused: bump KEY_VERSION.
    # A plain short prompt keeps the first version's key (it encodes bit-identically).
    assert BASE.key == "6d3b68b8ff0badbb38a7fe13f9928b4c"


@pytest.mark.parametrize("prompt, negative", [
    ("(a lighthouse:1.2) at dusk", ""), ("a lighthouse at dusk", "[blurry]"),
    ("a lighthouse BREAK at dusk", ""), ("a lighthouse <lora:ghibli:0.5>", ""),
    ("a lighthouse at dusk, " * 4, ""), ("a lighthouse at dusk \\ escaped", ""),
    ("un phare à l'aube", ""),
])
def test_a_prompt_that_a1111_syntax_reads_differently_takes_the_new_key_version(prompt, negative):
    # Given a prompt with syntax, a tag, more than 75 characters or non-ASCII text: what it
    # renders changed when prompts began to be read as A1111 reads them
    spec = BASE.replace(prompt=prompt, negative_prompt=negative)
    # Then its key is of the new version, so no image rendered before is reused for it
    assert json.loads(spec.key_text())[0] == KEY_VERSION != PLAIN_KEY_VERSION
    assert json.loads(BASE.key_text())[0] == PLAIN_KEY_VERSION


def test_an_integer_cfg_and_its_float_are_one_key_and_one_batch():
    whole, decimal = BASE.replace(cfg=7), BASE.replace(cfg=7.0)
    assert whole.key == decimal.key and whole.batch_group == decimal.batch_group


@pytest.mark.parametrize("name", [p.name for p in PARAMS.ranked("key_rank")])
def test_every_key_parameter_changes_the_key(name):
    other = {"model": "builtin:sd15", "prompt": "x", "negative_prompt": "y", "sampler": "DDIM",
             "seed": 1, "steps": 3, "cfg": 2.5, "width": 64, "height": 64, "clip_skip": 2,
             "subseed": 77, "subseed_strength": 0.5, "ensd": 31337,
             "schedule": "Karras", "eta": 0.5, "family": "sdxl", "prediction": "v",
             "guidance": 3.5, "shift": 3.0,
             # issue 11: VAE and embeddings
             "vae_hash": "0123456789", "ti_hashes": "easyneg: 0123456789ab",
             # issue 11: hires fix and img2img
             "hires_scale": 2.0, "hires_steps": 5, "hires_denoise": 0.3,
             "hires_upscaler": "Lanczos", "denoise": 0.2}
    # A variation seed acts only with a strength: compare with one that has a strength.
    base = BASE.replace(subseed_strength=0.3) if name == "subseed" else BASE
    changed = base.replace(**{name: other[name]}, model_hash=None if name == "model" else BASE.model_hash)
    assert changed.key != base.key


def test_prompt_and_seed_may_differ_within_a_batch_and_nothing_else():
    assert {p.name for p in PARAMS.values() if p.batch_rank is None} == {
        "prompt", "seed", "subseed", "subseed_strength", "ensd"}
    assert BASE.replace(prompt="x", seed=9, subseed=3, subseed_strength=0.5,
                        ensd=31337).batch_group == BASE.batch_group
    assert BASE.replace(steps=21).batch_group != BASE.batch_group


def test_the_batch_group_sorts_the_most_expensive_switch_first():
    ranked = [p.name for p in PARAMS.ranked("batch_rank")]
    assert ranked[:3] == ["model", "family", "prediction"]
    # issue 11: a VAE switch (a load) and an embedding set (a load) come before the size.
    assert ranked[3:8] == ["vae_hash", "vae", "ti_hashes", "width", "height"]


def test_every_axis_parameter_comes_from_the_table_or_is_a_named_composite():
    table_axes = {p.name for p in PARAMS.values() if p.axis_rank is not None}
    assert set(AXIS_PARAMS) == table_axes | {"size", "prompt_sr", "lora_weight", "lora"}


def test_every_parameter_but_the_seed_is_a_job_file_key():
    derived = {p.name for p in PARAMS.values() if p.derived}
    assert set(PARAMS) - {"seed"} - derived <= set(KNOWN_KEYS)
    # issue 11: hashes follow their files; a job file cannot set them.
    assert derived == {"vae_hash", "ti_hashes"} and not derived & set(KNOWN_KEYS)


def test_infotext_keys_are_unique():
    keys = [p.infotext for p in PARAMS.values() if p.infotext]
    assert len(keys) == len(set(keys))


def test_a_parameter_at_its_default_is_left_out_of_the_infotext_unless_a1111_always_writes_it():
    keys = [k for k, _ in infotext_settings(BASE)]
    assert "Clip skip" not in keys and "Steps" in keys and "Seed" in keys
    assert "Clip skip" in [k for k, _ in infotext_settings(BASE.replace(clip_skip=2))]


@pytest.mark.parametrize("name, value, reason", [
    ("steps", 0, "range"), ("steps", 7.5, "fraction"), ("steps", "7", "type"),
    ("steps", True, "type"), ("width", 70, "multiple"), ("cfg", 51, "range"),
    ("seed", MAX_SEED + 1, "range"), ("seed", -1, "range"), ("model", "  ", "empty"),
    ("sampler", "Euler b", "unknown"), ("prompt", 3, "type"),
])
def test_the_table_refuses_what_its_rules_exclude(name, value, reason):
    with pytest.raises(BadValue) as info:
        PARAMS[name].check(value)
    assert info.value.reason == reason


def test_checked_values_are_canonical():
    assert PARAMS["cfg"].check(7) == 7.0 and isinstance(PARAMS["cfg"].check(7), float)
    assert PARAMS["sampler"].check("dpm++ 2m karras") == "DPM++ 2M Karras"


# --- one rule, every spelling ------------------------------------------------------------

JOB = 'model = "builtin:tiny"\nprompt = "a cat"\n'


def job_error(text: str) -> str:
    with pytest.raises(JobFileError) as info:
        parse_job_file(text, "job.toml")
    return str(info.value)


@pytest.mark.parametrize("seeds", ["99999999999999999999", "[99999999999999999999]",
                                   '"1-99999999999999999999"', '"5, 9223372036854775808"'])
def test_a_seed_beyond_64_bits_is_refused_however_it_is_written(seeds):
    assert "seeds must be integers from 0 to 2**63-1" in job_error(JOB + f"seeds = {seeds}\n")


def test_the_largest_seed_is_accepted_however_it_is_written():
    for seeds in (f'"{MAX_SEED}"', f"[{MAX_SEED}]", str(MAX_SEED)):
        assert parse_job_file(JOB + f"seeds = {seeds}\n", "job.toml").seeds is not None


@pytest.mark.parametrize("name, bad", [("steps", "0"), ("cfg", "60"), ("width", "70"),
                                       ("clip_skip", "13"), ("sampler", "Euler b")])
def test_set_and_the_job_file_and_an_axis_refuse_the_same_values(name, bad):
    toml_value = bad if name != "sampler" else f'"{bad}"'
    assert f"job.toml: {name}: " in job_error(JOB + f"{name} = {toml_value}\n")
    assert f"axes.x.{name}: " in job_error(JOB + f"[axes]\nx = {{ {name} = [{toml_value}] }}\n")
    with pytest.raises(JobFileError) as info:
        apply_overrides(BASE, parse_assignments([f"{name}={bad}"]))
    assert str(info.value).startswith(f"--set: {name}: ")


def test_set_reads_numbers_as_numbers_and_text_as_written():
    changes = parse_assignments(["steps=30", "cfg=6.5", "prompt=a cat, 42", "seed=7"])
    assert changes == {"steps": 30, "cfg": 6.5, "prompt": "a cat, 42", "seed": 7}
    spec = apply_overrides(BASE, changes)
    assert (spec.steps, spec.cfg, spec.prompt, spec.seed) == (30, 6.5, "a cat, 42", 7)
    assert spec.model_hash == BASE.model_hash  # same model, same hash
    assert apply_overrides(BASE, {"model": "builtin:sd15"}).model_hash is None


# --- noise controls: variation seed, its strength, ENSD --------------------------------

def test_given_the_noise_controls_at_their_defaults_when_keyed_then_the_key_is_todays():
    at_defaults = BASE.replace(subseed=0, subseed_strength=0.0, ensd=0)
    assert at_defaults.key == "6d3b68b8ff0badbb38a7fe13f9928b4c" == BASE.key


def test_given_a_variation_seed_at_strength_0_when_normalized_then_it_is_no_variation_seed():
    spec = BASE.replace(subseed=99).normalized()
    assert spec.subseed == 0 and spec.key == BASE.key
    with_strength = BASE.replace(subseed=99, subseed_strength=0.25)
    assert with_strength.normalized() is with_strength


@pytest.mark.parametrize("name, value, reason", [
    ("ensd", -1, "range"), ("ensd", 2**31, "range"), ("ensd", 1.5, "fraction"),
    ("subseed", -1, "range"), ("subseed", MAX_SEED + 1, "range"),
    ("subseed_strength", 1.01, "range"), ("subseed_strength", -0.1, "range"),
])
def test_the_noise_controls_refuse_what_their_bounds_exclude(name, value, reason):
    with pytest.raises(BadValue) as info:
        PARAMS[name].check(value)
    assert info.value.reason == reason


def test_given_noise_controls_when_written_then_the_infotext_spells_and_orders_them_as_a1111():
    spec = BASE.replace(subseed=123, subseed_strength=0.3, clip_skip=2, ensd=31337)
    items = infotext_settings(spec)
    keys = [k for k, _ in items]
    tail = keys[keys.index("Model") + 1:]
    assert tail == ["Variation seed", "Variation seed strength", "Clip skip", "ENSD"]
    assert dict(items)["Variation seed"] == "123"
    assert dict(items)["Variation seed strength"] == "0.3"
    assert dict(items)["ENSD"] == "31337"


def test_given_a_strength_with_variation_seed_0_when_written_then_a1111_writes_both():
    keys = dict(infotext_settings(BASE.replace(subseed_strength=0.5)))
    assert keys["Variation seed"] == "0" and keys["Variation seed strength"] == "0.5"


def test_given_no_noise_controls_when_written_then_the_infotext_has_none_of_them():
    keys = [k for k, _ in infotext_settings(BASE)]
    assert not {"Variation seed", "Variation seed strength", "ENSD"} & set(keys)


def test_given_set_of_a_strength_0_when_applied_then_the_variation_seed_goes_too():
    varied = BASE.replace(subseed=5, subseed_strength=0.4)
    spec = apply_overrides(varied, parse_assignments(["subseed_strength=0"]))
    assert (spec.subseed, spec.subseed_strength) == (0, 0.0)
    spec = apply_overrides(BASE, parse_assignments(["subseed=5", "subseed_strength=0.5", "ensd=31337"]))
    assert (spec.subseed, spec.subseed_strength, spec.ensd) == (5, 0.5, 31337)


def test_given_a_job_file_with_noise_controls_then_they_are_keys_with_table_errors():
    job = parse_job_file(JOB + "subseed = 7\nsubseed_strength = 0.5\nensd = 31337\n", "job.toml")
    assert (job.base.subseed, job.base.subseed_strength, job.base.ensd) == (7, 0.5, 31337)
    assert "job.toml: ensd: " in job_error(JOB + "ensd = -1\n")
    assert "job.toml: subseed_strength: " in job_error(JOB + "subseed_strength = 2\n")


# --- schedule and eta: added later, so every earlier key stays valid ------------------------

def _key_before_schedules(spec: RenderSpec, sampler_name: str) -> str:
    """The key as computed before schedule and eta were parameters (the v1 payload list)."""
    import hashlib
    import json

    model = f"hash:{spec.model_hash}" if spec.model_hash else f"ref:{spec.model}"
    payload = [PLAIN_KEY_VERSION, model, spec.prompt, spec.negative_prompt, spec.seed, sampler_name,
               spec.steps, float(spec.cfg), spec.width, spec.height, spec.clip_skip]
    text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


@pytest.mark.parametrize("combined, pair", sorted(LEGACY_COMBINED.items()))
def test_given_an_old_combined_sampler_when_split_then_its_key_is_the_old_key(combined, pair):
    sampler, schedule = pair
    spec = BASE.replace(sampler=sampler, schedule=schedule)
    assert spec.key == _key_before_schedules(BASE, combined)


@pytest.mark.parametrize("sampler", ["Euler", "Euler a", "DPM++ 2M", "DDIM", "PLMS", "UniPC"])
def test_given_a_sampler_at_the_automatic_schedule_then_its_key_is_the_old_key(sampler):
    assert BASE.replace(sampler=sampler).key == _key_before_schedules(BASE, sampler)


def test_given_a_schedule_without_an_old_name_then_it_enters_the_key():
    exponential = BASE.replace(sampler="DPM++ 2M", schedule="Exponential")
    assert exponential.key != BASE.replace(sampler="DPM++ 2M").key
    assert BASE.replace(sampler="Euler", schedule="Karras").key != BASE.replace(sampler="Euler").key


def test_given_eta_left_to_the_sampler_then_it_is_not_in_the_key_and_set_it_is():
    assert BASE.replace(eta=None).key == BASE.key
    assert BASE.replace(eta=0.0).key != BASE.key != BASE.replace(eta=1.0).key


def test_given_eta_left_unset_and_set_in_one_plan_then_batch_groups_still_sort():
    groups = [BASE.replace(sampler="DDIM", eta=e).batch_group for e in (0.5, None, 0.0)]
    assert min(groups) == BASE.replace(sampler="DDIM").batch_group


def test_eta_may_be_none_and_is_read_from_text_as_none_or_a_number():
    assert PARAMS["eta"].check(None) is None and PARAMS["eta"].check(1) == 1.0
    assert PARAMS["eta"].parse_text("none") is None and PARAMS["eta"].parse_text("0.3") == 0.3
    with pytest.raises(BadValue):
        PARAMS["eta"].check(1.5)
    with pytest.raises(BadValue):
        PARAMS["cfg"].check(None)
