"""A misspelled key, axis parameter, sampler or schedule gets the closest known name, and the
names other tools use for a setting (A1111's cfg_scale, ComfyUI's scheduler) get ours."""

from __future__ import annotations

import pytest

from sdfarm.errors import JobFileError
from sdfarm.scheduler.jobfile import parse_job_file
from sdfarm.suggest import did_you_mean

BASE = 'model = "builtin:tiny"\nprompt = "a cat"\n'


@pytest.mark.parametrize("body, key, hint", [
    ("sampller = 'Euler'\n", "sampller", "(did you mean 'sampler'?)"),
    ("cfg_scale = 7\n", "cfg_scale", "(did you mean 'cfg'?)"),
    ("scheduler = 'Karras'\n", "scheduler", "(did you mean 'schedule'?)"),
    ("seed = 5\n", "seed", "(did you mean 'seeds'?)"),
    ("sampler = 'DPM++ 2M Karass'\n", "sampler", "(did you mean 'DPM++ 2M Karras'?)"),
    ("sampler = 'eular a'\n", "sampler", "(did you mean 'Euler a'?)"),
    ("schedule = 'karas'\n", "schedule", "(did you mean 'Karras'?)"),
    ("[axes]\nx = { cfgg = '4, 8' }\n", "axes.x.cfgg", "(did you mean 'cfg'?)"),
    ("[axes]\nextras = { cfg = '4, 8' }\n", "axes.extras", "(did you mean 'extra'?)"),
])
def test_a_misspelled_name_is_refused_with_the_closest_known_one(body, key, hint):
    with pytest.raises(JobFileError) as error:
        parse_job_file(BASE + body, "job.toml")
    assert error.value.key == key and hint in error.value.problem, error.value.problem


def test_nothing_is_suggested_when_nothing_is_close():
    assert did_you_mean("lighthouse", ["cfg", "steps", "sampler"]) == ""


@pytest.mark.parametrize("seeds", ["-1", "[-1]", '"-1"'])
def test_a1111s_random_seed_minus_one_points_at_a_random_draw(seeds):
    with pytest.raises(JobFileError) as error:
        parse_job_file(BASE + f"seeds = {seeds}\n", "job.toml")
    assert error.value.key == "seeds", error.value
    assert "seeds = { random = 1 }" in error.value.problem, error.value.problem
