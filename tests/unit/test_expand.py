"""Expanding a job file: prompts x axes x seeds, the grid cell of every image, wildcards through
dynamicprompts, the max_images cap, and reproducibility from the sweep seed."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from dynamicprompts.generators import (
    CombinatorialPromptGenerator,
    RandomPromptGenerator,
)
from dynamicprompts.wildcards import WildcardManager

from sdfarm.errors import JobFileError
from sdfarm.scheduler.expand import expand_job, sub_seed
from sdfarm.scheduler.jobfile import parse_job_file
from sdfarm.scheduler.plan import make_plan

BASE = 'model = "builtin:tiny"\nwidth = 64\nheight = 64\n'


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A job file folder with a wildcards/ folder beside it (files deliberately not sorted)."""
    wildcards = tmp_path / "wildcards"
    wildcards.mkdir()
    (wildcards / "animal.txt").write_text("owl\ncat\nfox\n", encoding="utf-8")
    (wildcards / "place.txt").write_text("a forest\n__season__ meadow\n", encoding="utf-8")
    (wildcards / "season.txt").write_text("spring\nautumn\nwinter\n", encoding="utf-8")
    return tmp_path


def job_in(folder: Path, body: str):
    return parse_job_file(BASE + body, str(folder / "job.toml"))


def error_of(folder: Path, body: str) -> str:
    with pytest.raises(JobFileError) as info:
        make_plan(job_in(folder, body))
    message = str(info.value)
    assert "\n" not in message and message.startswith(str(folder / "job.toml"))
    return message


def unsorted(folder: Path) -> WildcardManager:
    manager = WildcardManager(folder / "wildcards")
    manager.sort_wildcards = False
    return manager


def test_the_product_is_prompts_then_extra_z_y_x_then_seeds_innermost(folder):
    job = job_in(folder, 'prompt = "a {red|blue} cat"\nseeds = [1, 2]\n'
                         '[axes]\nx = { cfg = [4, 8] }\ny = { steps = [10, 20] }\n'
                         'z = { sampler = ["Euler", "DDIM"] }\n[[axes.extra]]\nclip_skip = [1, 2]\n')
    expansion = expand_job(job)
    assert len(expansion.specs) == 2 * 2 * 2 * 2 * 2 * 2
    expected = [
        (p, e, z, y, x, s)
        for p, e, z, y, x, s in itertools.product(range(2), repeat=6)
    ]
    got = [(c.prompt, c.extra[0], c.z, c.y, c.x, c.seed) for c in expansion.cells]
    assert got == expected
    first, second, third = expansion.specs[:3]
    assert (first.prompt, first.clip_skip, first.sampler, first.steps, first.cfg, first.seed) == (
        "a red cat", 1, "Euler", 10, 4.0, 1)
    assert (second.cfg, second.seed) == (4.0, 2), "seeds are innermost"
    assert (third.cfg, third.seed) == (8.0, 1), "then x"
    assert expansion.specs[-1].prompt == "a blue cat" and expansion.specs[-1].clip_skip == 2


def test_every_image_has_its_own_cell_and_its_values_follow_from_the_cell(folder):
    job = job_in(folder, 'prompt = "a cat"\nseeds = [5, 6, 7]\n'
                         '[axes]\nx = { cfg = "3-7 (+2)" }\ny = { size = "64x64, 128x64" }\n')
    expansion = expand_job(job)
    assert len(set(expansion.cells)) == len(expansion.cells) == 3 * 2 * 3
    for spec, cell in zip(expansion.specs, expansion.cells):
        assert spec.cfg == (3.0, 5.0, 7.0)[cell.x]
        assert (spec.width, spec.height) == ((64, 64), (128, 64))[cell.y]
        assert spec.seed == expansion.seeds[cell.seed]


def test_a_seed_axis_sets_each_cells_seed_instead_of_the_seed_list(folder):
    job = job_in(folder, 'prompt = "a cat"\n[axes]\nx = { seed = "10-12" }\n')
    expansion = expand_job(job)
    assert [s.seed for s in expansion.specs] == [10, 11, 12]
    assert expansion.seeds == () and {c.seed for c in expansion.cells} == {0}


def test_prompt_sr_replaces_the_term_in_every_expanded_prompt(folder):
    job = job_in(folder, 'prompt = "a {red|blue} cat on a cat mat"\nseeds = [1]\n'
                         '[axes]\nx = { prompt_sr = "cat, dog, fox" }\n')
    prompts = [s.prompt for s in expand_job(job).specs]
    assert prompts == ["a red cat on a cat mat", "a red dog on a dog mat", "a red fox on a fox mat",
                       "a blue cat on a cat mat", "a blue dog on a dog mat", "a blue fox on a fox mat"]


def test_prompt_sr_needs_its_search_term_in_every_prompt(folder):
    message = error_of(folder, 'prompt = "a {cat|dog}"\n[axes]\nx = { prompt_sr = "cat, fox" }\n')
    assert "axes.x.prompt_sr: search term 'cat' (the first value) does not occur in the prompt 'a dog'" in message


def test_a_model_axis_gives_each_model_its_own_hash_in_the_key(folder):
    job = job_in(folder, 'prompt = "a cat"\nseeds = [1]\n[axes]\nx = { model = ["m1", "m2"] }\n')
    plan = make_plan(job, "basehash00", {"m1": "aaaaaaaaaa", "m2": None})
    assert [(s.model, s.model_hash) for s in plan.specs] == [("m1", "aaaaaaaaaa"), ("m2", None)]


# --- wildcards and variants, through dynamicprompts -------------------------------------

TEMPLATES = [
    "a {red|green|blue} {cat|dog}",
    "a __animal__ in __place__",
    "{2$$small|big|old} __animal__",
    "{0.5::bright|2::dark} __season__ {sky|sea}",
]


@pytest.mark.parametrize("template", TEMPLATES)
def test_combinatorial_counts_equal_what_dynamicprompts_gives(folder, template):
    job = job_in(folder, f'prompt = "{template}"\nseeds = [1, 2]\n[axes]\nx = {{ cfg = [5, 7, 9] }}\n')
    theirs = CombinatorialPromptGenerator(unsorted(folder)).generate(template)
    plan = make_plan(job)
    assert len(plan.prompts) == len(theirs)
    assert [p for p, _ in plan.prompts] == list(theirs)
    assert plan.images == len(theirs) * 3 * 2


@pytest.mark.parametrize("template", TEMPLATES)
def test_random_mode_draws_what_dynamicprompts_draws_from_the_sweep_seed(folder, template):
    job = job_in(folder, f'prompt = "{template}"\nprompts = {{ random = 7 }}\nseeds = [1]\n'
                         'sweep_seed = 4242\n[axes]\nx = { cfg = [5, 9] }\n')
    theirs = RandomPromptGenerator(unsorted(folder), seed=sub_seed(4242, "prompt")).generate(template, 7)
    plan = make_plan(job)
    assert [p for p, _ in plan.prompts] == list(theirs)
    assert plan.images == 7 * 2


def test_random_mode_is_reproducible_from_the_sweep_seed_and_changes_with_it(folder):
    body = 'prompt = "a __animal__ in __place__"\nprompts = { random = 12 }\nsweep_seed = {seed}\n'
    first = make_plan(job_in(folder, body.replace("{seed}", "11"))).prompts
    again = make_plan(job_in(folder, body.replace("{seed}", "11"))).prompts
    other = make_plan(job_in(folder, body.replace("{seed}", "12"))).prompts
    assert first == again
    assert first != other


def test_negative_prompts_use_the_same_syntax_and_multiply_in_combinatorial_mode(folder):
    job = job_in(folder, 'prompt = "a {cat|dog}"\nnegative_prompt = "{blurry|ugly}, __season__"\n'
                         'seeds = [1]\n')
    pairs = make_plan(job).prompts
    assert len(pairs) == 2 * 2 * 3
    assert pairs[:3] == (("a cat", "blurry, spring"), ("a cat", "blurry, autumn"),
                         ("a cat", "blurry, winter"))


def test_negative_prompts_are_drawn_alongside_prompts_in_random_mode(folder):
    job = job_in(folder, 'prompt = "a __animal__"\nnegative_prompt = "{blurry|ugly}"\n'
                         'prompts = { random = 6 }\nseeds = [1]\n')
    pairs = make_plan(job).prompts
    assert len(pairs) == 6
    assert {n for _, n in pairs} <= {"blurry", "ugly"}


def test_a_missing_wildcard_is_an_error_naming_it_and_the_folder(folder):
    message = error_of(folder, 'prompt = "a __colour__ cat"\n')
    assert "prompt: wildcard __colour__ not found in" in message
    assert "available: __animal__, __place__, __season__" in message


def test_a_missing_wildcard_in_the_negative_prompt_names_that_key(folder):
    message = error_of(folder, 'prompt = "a cat"\nnegative_prompt = "__nope__"\n')
    assert ": negative_prompt: wildcard __nope__ not found" in message


def test_the_wildcard_folder_may_be_named_in_the_job_file(folder):
    (folder / "mine").mkdir()
    (folder / "mine" / "hue.txt").write_text("teal\nochre\n", encoding="utf-8")
    job = job_in(folder, 'prompt = "a __hue__ cat"\nwildcards = "mine"\nseeds = [1]\n')
    assert [p for p, _ in make_plan(job).prompts] == ["a teal cat", "a ochre cat"]


# --- the cap -------------------------------------------------------------------------------

def test_the_default_cap_refuses_more_than_100000_images_with_the_count(folder):
    message = error_of(folder, 'prompt = "a cat"\nseeds = [1]\n'
                               '[axes]\nx = { steps = "1-1000" }\ny = { cfg = "0-50 [101]" }\n')
    assert ": max_images: the job file describes at least 101,000 images (1,000 steps values x " \
           "101 cfg values x 1 seeds), more than max_images = 100,000; raise max_images" in message


def test_the_cap_counts_prompts_and_can_be_raised(folder):
    body = 'prompt = "a {red|green|blue} cat"\nseeds = [1, 2]\n[axes]\nx = { cfg = [4, 8] }\n'
    message = error_of(folder, body.replace("seeds", "max_images = 11\nseeds"))
    assert "the job file describes 12 images (3 prompts x 2 cfg values x 2 seeds), more than " \
           "max_images = 11" in message
    assert make_plan(job_in(folder, body.replace("seeds", "max_images = 12\nseeds"))).images == 12
