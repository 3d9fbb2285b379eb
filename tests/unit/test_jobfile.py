"""The job file: what a user may write, and the one-line error for everything else."""

from __future__ import annotations

import pytest

from sdfarm.errors import JobFileError
from sdfarm.scheduler.jobfile import parse_job_file
from sdfarm.scheduler.plan import make_plan
from sdfarm.scheduler.seeds import resolve_seeds

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
    assert (job.name, job.model, job.prompt) == ("lighthouses", "builtin:tiny", "a lighthouse")
    assert (job.steps, job.cfg, job.width, job.height) == (10, 6.5, 64, 96)
    assert job.sampler == "Euler a" and job.negative_prompt == "" and job.clip_skip == 1
    assert job.batch_size == 4


def test_sampler_names_are_matched_case_insensitively_to_their_a1111_spelling():
    assert parse(GOOD + 'sampler = "dpm++ 2m karras"').sampler == "DPM++ 2M Karras"


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


def test_seed_forms_resolve_to_integers():
    assert resolve_seeds([3, 1], 0) == [3, 1]
    assert resolve_seeds("1000-1003", 0) == [1000, 1001, 1002, 1003]
    assert resolve_seeds("1, 5, 7-8", 0) == [1, 5, 7, 8]
    assert resolve_seeds(42, 0) == [42]


def test_seed_zero_is_a_seed_not_a_request_for_a_random_one():
    assert resolve_seeds([0], 99) == [0]


def test_random_seeds_come_from_the_sweep_seed_so_planning_again_gives_the_same_seeds():
    first = resolve_seeds({"random": 8}, 1234)
    assert first == resolve_seeds({"random": 8}, 1234)
    assert first != resolve_seeds({"random": 8}, 1235)
    assert len(set(first)) == 8 and all(0 <= s < 2**32 for s in first)


def test_the_default_sweep_seed_is_derived_from_the_file_text():
    text = GOOD.replace("seeds = [1, 5, 9]", "seeds = { random = 4 }")
    assert parse(text).sweep_seed == parse(text).sweep_seed
    assert make_plan(parse(text)).specs == make_plan(parse(text)).specs
    assert parse(text).sweep_seed != parse(text + "# another draw\n").sweep_seed
    assert parse(text + "sweep_seed = 7\n").sweep_seed == 7
