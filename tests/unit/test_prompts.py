"""Prompt templates through dynamicprompts: what a user gets, and what we do differently on purpose."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from dynamicprompts.generators import (
    CombinatorialPromptGenerator,
    RandomPromptGenerator,
)
from dynamicprompts.wildcards import WildcardManager

from sdfarm.errors import JobFileError
from sdfarm.scheduler.jobfile import parse_job_file
from sdfarm.scheduler.plan import make_plan
from sdfarm.scheduler.prompts import check_wildcards, expand_prompts

FILE = "jobs/prompts.toml"


def fail(problem: str) -> JobFileError:
    return JobFileError(FILE, "prompt", problem)


@pytest.fixture
def wildcards(tmp_path: Path) -> Path:
    """A wildcard folder: plain files, a subfolder, nesting, and files in a non-sorted order."""
    folder = tmp_path / "wildcards"
    (folder / "animals").mkdir(parents=True)
    files = {
        "colors.txt": "red\ngreen\nblue\n# a comment line\n\nred\n",
        "fruit.txt": "zebra melon\napple\nmango\n",
        "animals/cats.txt": "tabby\nsiamese\n",
        "animals/dogs.txt": "pug\n",
        "scene.txt": "a __colors__ house\n{big|small} __animals/cats__\n",
        "outer.txt": "__scene__ at night\n",
        "broken.txt": "a __nowhere__ thing\n",
        "deep.txt": "__broken__\n",
        "loop_a.txt": "x __loop_b__\n",
        "loop_b.txt": "y __loop_a__\n",
        "empty.txt": "# nothing here\n\n",
    }
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def expand(template: str, wildcards: Path | None = None, mode="combinatorial", seed: int = 0, **kw) -> list[str]:
    return expand_prompts(template, mode=mode, seed=seed, wildcard_dir=wildcards, fail=fail, **kw)


def error_of(template: str, wildcards: Path | None = None, mode="combinatorial") -> str:
    with pytest.raises(JobFileError) as info:
        expand(template, wildcards, mode)
    message = str(info.value)
    assert message.startswith(f"{FILE}: prompt: ") and "\n" not in message
    return message


def unsorted_manager(folder: Path) -> WildcardManager:
    manager = WildcardManager(folder)
    manager.sort_wildcards = False
    return manager


# --- the syntax a user writes ---------------------------------------------------------------

def test_a_template_without_syntax_is_its_own_single_prompt():
    assert expand("a lighthouse at dusk, (masterpiece:1.2), <lora:x:0.8>") == [
        "a lighthouse at dusk, (masterpiece:1.2), <lora:x:0.8>"]
    assert expand("a lighthouse", mode=3) == ["a lighthouse"] * 3
    assert expand("") == [""]


def test_variants_expand_to_every_choice_in_order():
    assert expand("a {red|green|blue} car") == ["a red car", "a green car", "a blue car"]


def test_a_bounded_variant_picks_that_many_distinct_choices_in_every_order():
    assert expand("{2$$a|b|c}") == ["a,b", "a,c", "b,a", "b,c", "c,a", "c,b"]
    assert expand("{1-2$$ and $$a|b}") == ["a", "b", "a and b", "b and a"]


def test_weights_change_random_draws_but_every_option_is_one_combination():
    assert expand("{0.5::a|1::b}") == ["a", "b"]
    draws = expand("{0.01::a|100::b}", mode=50, seed=3)
    assert draws.count("b") > 45


def test_wildcards_come_from_txt_files_and_subfolders(wildcards):
    assert expand("__colors__ and __animals/cats__", wildcards) == [
        "red and tabby", "red and siamese", "green and tabby", "green and siamese",
        "blue and tabby", "blue and siamese"]


def test_nested_wildcards_expand_through_every_level(wildcards):
    assert expand("__outer__", wildcards) == [
        "a red house at night", "a green house at night", "a blue house at night",
        "big tabby at night", "big siamese at night", "small tabby at night",
        "small siamese at night"]


def test_a_glob_wildcard_takes_the_values_of_every_matching_file(wildcards):
    assert sorted(expand("__animals/*__", wildcards)) == ["pug", "siamese", "tabby"]


def test_a_computed_wildcard_name_is_checked_in_full_but_expands_as_dynamicprompts_does(wildcards):
    # dynamicprompts resolves a computed name once per expansion (combinatorial mode: to its
    # first value), yet any name it can take may be the one, so every one must exist.
    assert expand("__animals/{cats|dogs}__", wildcards) == ["tabby", "siamese"]
    theirs = RandomPromptGenerator(unsorted_manager(wildcards), seed=2).generate("__animals/{cats|dogs}__", 30)
    assert expand("__animals/{cats|dogs}__", wildcards, mode=30, seed=2) == theirs


# --- (b) wildcard order: the file's, not alphabetical --------------------------------------

def test_wildcard_values_keep_the_files_order_where_dynamicprompts_would_sort_them(wildcards):
    ours = expand("__fruit__", wildcards)
    theirs = CombinatorialPromptGenerator(WildcardManager(wildcards)).generate("__fruit__", max_prompts=None)
    assert ours == ["zebra melon", "apple", "mango"]
    assert theirs == ["apple", "mango", "zebra melon"], "dynamicprompts' default is sorted"


def test_repeated_lines_and_comments_in_a_wildcard_file_are_dropped(wildcards):
    assert expand("__colors__", wildcards) == ["red", "green", "blue"]


# --- duplicates -----------------------------------------------------------------------------

def test_combinatorial_output_has_each_prompt_once_because_equal_prompts_are_the_same_image():
    template = "{a|ab}{b|}"
    theirs = CombinatorialPromptGenerator().generate(template, max_prompts=None)
    assert theirs == ["ab", "a", "abb", "ab"], "dynamicprompts repeats 'ab' across a sequence"
    assert expand(template) == ["ab", "a", "abb"], "first occurrence kept, order otherwise theirs"


def test_within_one_variant_dynamicprompts_already_drops_repeats():
    assert expand("{a|a}") == ["a"]


def test_random_draws_keep_repeats_because_n_draws_means_n_prompts():
    draws = expand("{a|b}", mode=20, seed=1)
    assert len(draws) == 20 and set(draws) == {"a", "b"}


# --- counts and draws agree with dynamicprompts itself --------------------------------------

TEMPLATES = [
    "plain words",
    "{red|green|blue} {cat|dog}",
    "{2$$a|b|c}",
    "{1-2$$a|b|c} x",
    "{0.5::a|1::b|2::c}",
    "__colors__ __animals/cats__",
    "__outer__",
    "a {big|small} __fruit__ {x|y|z}",
    "__animals/*__ {1|2}",
    "${c=__colors__} ${c} and ${c}",
]


@pytest.mark.parametrize("template", TEMPLATES)
def test_combinatorial_expansion_is_what_dynamicprompts_gives(template, wildcards):
    theirs = CombinatorialPromptGenerator(unsorted_manager(wildcards)).generate(template, max_prompts=None)
    assert len(theirs) == len(set(theirs)), "these templates have no cross-sequence repeats"
    assert expand(template, wildcards) == theirs
    # And with dynamicprompts' default (sorted) manager: the same prompts, in another order.
    sorted_theirs = CombinatorialPromptGenerator(WildcardManager(wildcards)).generate(template, max_prompts=None)
    assert sorted(expand(template, wildcards)) == sorted(sorted_theirs)


@pytest.mark.parametrize("template", TEMPLATES)
@pytest.mark.parametrize("count", [1, 7])
def test_random_draws_are_exactly_random_prompt_generators_for_the_same_seed(template, count, wildcards):
    theirs = RandomPromptGenerator(unsorted_manager(wildcards), seed=1234).generate(template, count)
    assert expand(template, wildcards, mode=count, seed=1234) == theirs


# --- reproducibility ------------------------------------------------------------------------

def test_random_mode_is_reproducible_from_the_seed(wildcards):
    template = "a {big|small|tiny|huge} __colors__ __animals/*__ {on|under} a {mat|bed|table}"
    first = expand(template, wildcards, mode=20, seed=42)
    assert expand(template, wildcards, mode=20, seed=42) == first
    assert expand(template, wildcards, mode=20, seed=43) != first
    assert len(first) == 20


def test_a_random_variant_inside_combinatorial_mode_is_reproducible_from_the_seed():
    # dynamicprompts alone draws {~...} from an unseeded module-wide generator.
    template = "{~a|b|c|d|e|f|g|h} {x|y}"
    assert expand(template, seed=5) == expand(template, seed=5)
    assert len({tuple(expand(template, seed=s)) for s in range(10)}) > 1


# --- (a) missing wildcards fail before anything is produced ---------------------------------

def test_a_missing_wildcard_fails_listing_what_is_available(wildcards, caplog):
    caplog.set_level(logging.WARNING)
    message = error_of("a __colours__ car", wildcards)
    assert f"wildcard __colours__ not found in {wildcards}; available: " in message
    assert "__animals/cats__, __animals/dogs__, __broken__, __colors__" in message
    assert not [r for r in caplog.records if "No values found" in r.getMessage()], \
        "we fail before dynamicprompts would fall back to the literal __colours__"


def test_dynamicprompts_alone_would_render_a_missing_wildcard_literally(wildcards):
    # ...and endlessly: its fallback yields forever, so only max_prompts (1000 by default) stops it.
    theirs = CombinatorialPromptGenerator(WildcardManager(wildcards)).generate("a __colours__ car")
    assert set(theirs) == {"a __colours__ car"} and len(theirs) == 1000


def test_a_missing_wildcard_nested_in_a_wildcard_file_fails_naming_the_file_using_it(wildcards):
    message = error_of("__deep__", wildcards)
    assert f"wildcard __nowhere__ (used in __broken__) not found in {wildcards}" in message


def test_a_missing_wildcard_fails_in_random_mode_too(wildcards):
    assert "wildcard __nope__ not found" in error_of("{a|__nope__}", wildcards, mode=5)


def test_every_name_a_computed_wildcard_can_take_must_exist(wildcards):
    assert "wildcard __animals/birds__ not found" in error_of("__animals/{cats|birds}__", wildcards)


def test_a_wildcard_without_a_folder_or_with_a_missing_folder_says_so(tmp_path):
    assert "wildcard __colors__ is used but no wildcard folder is set" in error_of("__colors__")
    missing = tmp_path / "nope"
    assert f"the wildcard folder {missing} does not exist" in error_of("__colors__", missing)
    assert expand("no wildcards here", missing) == ["no wildcards here"]


def test_an_empty_wildcard_file_is_an_error_not_an_empty_prompt(wildcards):
    assert "wildcard __empty__ has no values" in error_of("__empty__", wildcards)


def test_wildcards_that_use_each_other_in_a_loop_fail_instead_of_recursing(wildcards):
    message = error_of("__loop_a__", wildcards)
    assert "refers to itself (__loop_a__ -> __loop_b__ -> __loop_a__)" in message


def test_check_wildcards_validates_a_negative_prompt_without_expanding_it(wildcards):
    check_wildcards("blurry, __colors__, {lowres|jpeg}", wildcards, fail)
    check_wildcards("", None, fail)
    with pytest.raises(JobFileError, match="wildcard __ugly__ not found"):
        check_wildcards("blurry, __ugly__", wildcards, fail)


# --- other template errors ------------------------------------------------------------------

def test_an_unparsable_template_is_a_one_line_error_with_a_hint():
    message = error_of("a {red|green car")
    assert "cannot parse prompt 'a {red|green car'" in message and "unclosed {" in message


def test_an_unparsable_line_in_a_wildcard_file_names_the_file(tmp_path):
    (tmp_path / "bad.txt").write_text("a {x __colors__\n", encoding="utf-8")
    assert "(a line of __bad__)" in error_of("__bad__", tmp_path)


def test_a_variable_used_but_never_set_is_an_error():
    assert "variable ${who} is used but never set" in error_of("a photo of ${who}")


def test_a_variable_may_be_set_anywhere_in_its_sequence_as_in_dynamicprompts():
    assert expand("${who} sits; ${who={cat|dog}}") == ["cat sits; ", "dog sits; "]


def test_a_template_expanding_past_the_limit_asks_for_random_draws():
    message = error_of_limit("{a|b}{a|b}{a|b}{a|b}", limit=10)
    assert "expands to more than 10 prompts; draw a number of random prompts instead" in message
    assert len(expand("{a|b}{a|b}{a|b}{a|b}", limit=16)) == 16


def error_of_limit(template: str, limit: int) -> str:
    with pytest.raises(JobFileError) as info:
        expand(template, limit=limit)
    return str(info.value)


@pytest.mark.parametrize("mode", [0, -1, True, "random", 2.5])
def test_the_mode_is_combinatorial_or_a_positive_count(mode):
    assert "prompt" in error_of("{a|b}", mode=mode)


# --- (c) the pyparsing DeprecationWarning is silenced locally -------------------------------

def test_the_pyparsing_deprecation_warning_is_silenced_only_around_our_calls():
    """When this fails because the warning no longer fires, the suppression can go."""
    code = textwrap.dedent("""
        import warnings
        warnings.simplefilter("error", DeprecationWarning)
        before = list(warnings.filters)
        from sdfarm.scheduler.prompts import check_wildcards, expand_prompts
        assert expand_prompts("{a|b}", mode="combinatorial", seed=0, wildcard_dir=None,
                              fail=ValueError) == ["a", "b"]
        check_wildcards("{c|d}", None, ValueError)
        assert warnings.filters == before, "no global change"

        from dynamicprompts.parser import parse as parse_module
        parse_module._parser_cache.clear()  # the warning fires when the grammar is built
        try:
            parse_module.parse("{a|b}")
        except DeprecationWarning as exc:
            print("fires outside:", exc)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "fires outside: 'delimited_list' deprecated" in out.stdout


def test_a_template_dynamicprompts_fails_to_enumerate_is_one_error_with_a_way_out(wildcards):
    # dynamicprompts raises "generator raised StopIteration" enumerating several wildcards of
    # one variant; a random draw of the same template works
    template = "My favourite colours are {2$$__colors__|__colors__}"
    message = error_of(template, wildcards)
    assert "dynamicprompts failed on it" in message and "prompts = { random = N }" in message
    assert len(expand(template, wildcards, mode=3)) == 3


# Slow cases (issue 13, item E): dynamicprompts parses a {...} at ~1 ms per option and its
# combinatorial sampler compares every option with every other (103 s for 20,000 options).

def _variant(n: int) -> str:
    return "a {" + "|".join(f"o{i}" for i in range(n)) + "} cat"


def test_a_variant_of_20000_options_is_one_error_line_naming_the_limit_and_the_way_out():
    job = parse_job_file(f'model = "m"\nprompt = "{_variant(20_000)}"\n', "huge.toml")
    with pytest.raises(JobFileError) as caught:
        make_plan(job)
    assert str(caught.value) == (
        "huge.toml: prompt: a {...} variant has 20,000 options; at most 1,000 per variant "
        "(planning slows to minutes past that); put them in a wildcard file, one per line, "
        "and write __name__")


def test_the_limit_counts_each_nested_variant_apart_and_admits_1000_options():
    assert len(expand(_variant(1_000))) == 1_000
    nested = "{x|" + "|".join(f"{{a{i}|b{i}}}" for i in range(1_000)) + "}"  # 1,001 outer options
    with pytest.raises(JobFileError, match="has 1,001 options"):
        expand(nested)
    pipes_outside = "a | b " * 2_000 + "{x|y}"  # a bar outside braces is no option
    assert expand(pipes_outside) == ["a | b " * 2_000 + "x", "a | b " * 2_000 + "y"]


def test_20000_options_in_a_wildcard_file_expand(tmp_path):
    (tmp_path / "many.txt").write_text("\n".join(f"o{i}" for i in range(20_000)))
    assert len(expand("a __many__ cat", tmp_path)) == 20_000
