"""The job file: what a user may write, and the one-line error for everything else."""

from __future__ import annotations

import pytest

from sdfarm.errors import JobFileError
from sdfarm.scheduler.jobfile import parse_job_file
from sdfarm.scheduler.plan import make_plan

GOOD = '''
name = "lighthouses"
model = "builtin:tiny"
prompt = "a lighthouse"
steps = 10
cfg = 6.5
width = 64
height = 96
seeds = [1, 5, 9]
'''


def parse(text: str):
    return parse_job_file(text, "jobs/test.toml")


def error_of(text: str) -> str:
    with pytest.raises(JobFileError) as info:
        parse(text)
    message = str(info.value)
    assert "\n" not in message, "errors are one line"
    assert message.startswith("jobs/test.toml"), "errors name the file"
    return message


def test_a_valid_file_gives_typed_values_and_defaults():
    job = parse(GOOD)
    base = job.base
    assert (job.name, base.model, base.prompt) == ("lighthouses", "builtin:tiny", "a lighthouse")
    assert (base.steps, base.cfg, base.width, base.height) == (10, 6.5, 64, 96)
    assert base.sampler == "Euler a" and base.negative_prompt == "" and base.clip_skip == 1
    assert job.batch_size == 4


def test_sampler_names_are_matched_case_insensitively_to_their_a1111_spelling():
    base = parse(GOOD + 'sampler = "dpm++ 2m karras"').base
    assert (base.sampler, base.schedule) == ("DPM++ 2M", "Karras")


@pytest.mark.parametrize("text, key, fragment", [
    ('model = "builtin:tiny"', "prompt", "is required"),
    (GOOD.replace("steps = 10", "steps = -1"), "steps", "from 1 to 1000, got -1"),
    (GOOD + 'sampler = "Euler b"', "sampler", "known samplers: Euler, Euler a"),
    (GOOD.replace("seeds = [1, 5, 9]", 'seeds = "10-1"'), "seeds", "goes down"),
    (GOOD.replace("steps = 10", 'steps = "ten"'), "steps", "got a string 'ten'"),
    (GOOD.replace("cfg = 6.5", "cfg = true"), "cfg", "got a boolean"),
    (GOOD.replace("width = 64", "width = 65"), "width", "multiple of 8"),
    (GOOD + "colour = 3", "colour", "unknown key; allowed keys: name, model"),
    (GOOD.replace("seeds = [1, 5, 9]", 'seeds = [1, "x"]'), "seeds", "got 'x'"),
    (GOOD.replace("seeds = [1, 5, 9]", "seeds = { random = 0 }"), "seeds", "random must be a count"),
    (GOOD.replace("seeds = [1, 5, 9]", "seeds = { many = 3 }"), "seeds", "takes only 'random'"),
    (GOOD.replace('prompt = "a lighthouse"', 'prompt = "  "'), "prompt", "must not be empty"),
])
def test_each_bad_value_names_the_file_the_key_and_what_is_allowed(text, key, fragment):
    message = error_of(text)
    assert f"jobs/test.toml: {key}:" in message
    assert fragment in message


def test_invalid_toml_is_one_line_with_the_position():
    message = error_of('prompt = "unterminated\n')
    assert "invalid TOML" in message and "line 1" in message


def test_the_default_sweep_seed_is_derived_from_the_file_text():
    text = GOOD.replace("seeds = [1, 5, 9]", "seeds = { random = 4 }")
    assert parse(text).sweep_seed == parse(text).sweep_seed
    assert make_plan(parse(text)).specs == make_plan(parse(text)).specs
    assert parse(text).sweep_seed != parse(text + "# another draw\n").sweep_seed
    assert parse(text + "sweep_seed = 7\n").sweep_seed == 7


# --- grids: [axes], prompts, wildcards, max_images -----------------------------------------

PLAIN = 'model = "builtin:tiny"\nprompt = "a cat"\n'


def test_axes_prompt_mode_wildcards_and_cap_have_defaults():
    job = parse(PLAIN)
    assert job.axes == () and job.prompt_mode == "combinatorial" and job.max_images == 100_000
    assert job.wildcard_dir == "jobs/wildcards", "the wildcard folder is relative to the job file"


def test_axes_prompt_mode_wildcards_and_cap_are_read_from_the_file():
    job = parse(PLAIN + 'prompts = { random = 5 }\nwildcards = "../shared/wc"\nmax_images = 7\n'
                        '[axes]\nx = { cfg = "4-8 (+2)" }\ny = { steps = [10, 20] }\n')
    assert [(a.slot, a.param, a.values) for a in job.axes] == [
        ("x", "cfg", (4.0, 6.0, 8.0)), ("y", "steps", (10, 20))]
    assert job.prompt_mode == 5 and job.max_images == 7
    assert job.wildcard_dir == "jobs/../shared/wc"


@pytest.mark.parametrize("axes, key, fragment", [
    ('x = { steps = "1-" }', "axes.x.steps", "'1-' is not a value or a range"),
    ('x = { steps = "a-b" }', "axes.x.steps", "'a-b' is not a value or a range"),
    ('x = { cfg = "1-5 (+0)" }', "axes.x.cfg", "range '1-5 (+0)' has step 0"),
    ('x = { steps = [10, "20"] }', "axes.x.steps", "mixes types in one list (an integer 10, a string '20')"),
    ('y = { steps = "1.5-3" }', "axes.y.steps", "'1.5-3' has a fractional number"),
    ('x = { steps = "10-1 (+2)" }', "axes.x.steps", "a range from 10 to 1 needs a negative step"),
    ('x = { steps = "1-10 [0]" }', "axes.x.steps", "the count in [N] must be at least 1"),
    ('x = { steps = "0-4" }', "axes.x.steps", "steps value 0 is out of range"),
    ('x = { cfg = "40-60 (+10)" }', "axes.x.cfg", "cfg value 60.0 is not allowed; cfg takes numbers from 0 to 50"),
    ('x = { cfg = "4, 4" }', "axes.x.cfg", "repeats the value 'CFG: 4'"),
    ('x = { cfg = "" }', "axes.x.cfg", "has no values"),
    ('x = { steps = true }', "axes.x.steps", "must be a list or a string of values, got a boolean"),
    ('x = { colour = [1] }', "axes.x.colour", "allowed: lora_weight, lora, cfg, steps, sampler"),
    ('w = { cfg = [1] }', "axes.w", "unknown axis; allowed: x, y, z, extra"),
    ('x = { cfg = [1], steps = [2] }', "axes.x", "an axis varies exactly one parameter, got 2"),
    ('x = { width = [64] }\ny = { size = ["64x64"] }', "axes.y.size", "already varied by axes.x.width"),
    ('z = { sampler = "Euler, Foo" }', "axes.z.sampler", "unknown sampler 'Foo'; known samplers: Euler"),
    ('x = { size = "64by64" }', "axes.x.size", "'64by64' is not WIDTHxHEIGHT"),
    ('x = { width = "60" }', "axes.x.width", "width value 60 is out of range"),
    ('extra = 3', "axes.extra", "must be a list of tables, written [[axes.extra]]"),
])
def test_every_bad_axis_is_a_one_line_error_naming_the_file_the_axis_and_the_value(axes, key, fragment):
    message = error_of(PLAIN + "[axes]\n" + axes + "\n")
    assert f"jobs/test.toml: {key}: " in message
    assert fragment in message


def test_a_bad_extra_axis_is_named_by_its_position():
    message = error_of(PLAIN + '[[axes.extra]]\nclip_skip = [1, 2]\n[[axes.extra]]\nseed = "1-x"\n')
    assert "jobs/test.toml: axes.extra[2].seed: '1-x' is not a value or a range" in message


@pytest.mark.parametrize("extra, key, fragment", [
    ('seeds = [1]\n[axes]\nx = { seed = [1, 2] }', "seeds", "already varied by axes.x.seed"),
    ('prompts = "random"', "prompts", 'must be "combinatorial" (every expansion) or { random = N }'),
    ('prompts = { random = 0 }', "prompts.random", "from 1 to 100000, got 0"),
    ('prompts = { count = 3 }', "prompts", "takes only 'random'"),
    ('max_images = 0', "max_images", "from 1 to 1000000, got 0"),
    ('wildcards = ""', "wildcards", "must not be empty"),
])
def test_bad_grid_keys_are_one_line_errors(extra, key, fragment):
    message = error_of(PLAIN + extra + "\n")
    assert f"jobs/test.toml: {key}: " in message and fragment in message


def test_duplicate_seeds_leave_a_warning_for_the_commands_to_print():
    job = parse_job_file(GOOD.replace("seeds = [1, 5, 9]", "seeds = [1, 5, 5, 9]"), "dup.toml")
    assert job.warnings == ("dup.toml: seeds: 5 appears twice; duplicates render the same "
                            "image, so each seed is rendered once (3 seeds, not 4)",)
    assert parse_job_file(GOOD, "ok.toml").warnings == ()


def test_max_images_admits_the_million_measured_to_work_and_says_why_not_more():
    assert parse_job_file(GOOD + "max_images = 1000000\n", "a.toml").max_images == 1_000_000
    with pytest.raises(JobFileError) as caught:
        parse_job_file(GOOD + "max_images = 10000000\n", "a.toml")
    assert str(caught.value) == (
        "a.toml: max_images: must be an integer from 1 to 1,000,000 (the largest sweep measured "
        "to record and submit), got 10,000,000; split the sweep into several job files")


def test_a_plan_beyond_the_ceiling_says_to_split_it_not_to_raise_max_images():
    text = GOOD.replace("seeds = [1, 5, 9]", 'seeds = "1-1000"') + (
        "max_images = 1000000\n[axes]\nx = { cfg = \"1-25 [1001]\" }\n")
    with pytest.raises(JobFileError, match=r"describes at least 1,001,000 images .* a sweep may "
                                           r"have at most 1,000,000; split it"):
        make_plan(parse_job_file(text, "a.toml"))
