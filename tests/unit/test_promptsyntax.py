"""A literal prompt is planned without dynamicprompts: the shortcut must agree with the library."""

from __future__ import annotations

import random
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from sdfarm.scheduler.prompts import expand_prompts
from sdfarm.scheduler.promptsyntax import is_literal

ROOT = Path(__file__).resolve().parents[2]


def library_expansion(template: str) -> list[str] | str:
    """What dynamicprompts itself makes of ``template`` (bypassing the shortcut)."""
    from dynamicprompts.generators import CombinatorialPromptGenerator
    try:
        with warnings.catch_warnings():  # pyparsing's deprecations, raised from dynamicprompts
            warnings.simplefilter("ignore", DeprecationWarning)
            return [str(p) for p in CombinatorialPromptGenerator().generate(template)]
    except Exception as exc:  # noqa: BLE001 - any failure is a disagreement
        return f"error: {exc}"


@pytest.mark.parametrize("template", [
    "a lighthouse on a cliff at dusk, oil painting, (masterpiece:1.2), [blurry], <lora:x:0.5>",
    "masterpiece, best quality, 1girl, solo, looking at viewer!",
    "日本の城, été",
])
def test_common_prompts_are_literal_and_the_library_agrees(template):
    assert is_literal(template)
    assert library_expansion(template) == [template]


@pytest.mark.parametrize("template", [
    "a {red|blue} car", "a __colours__ car", "${x=a} b", r"a \{b\}", "# a comment", "a // b",
    "a /* b */ c", "100% cotton", "a\tb",
])
def test_anything_with_template_syntax_goes_to_the_library(template):
    assert not is_literal(template)


def test_on_random_text_the_shortcut_never_disagrees_with_the_library():
    # Given random text made of letters, punctuation and every template marker
    rng = random.Random(7)
    alphabet = "ab c,()[]:|~#@!%^&*-+=;'\"<>?/.`_1 \t\n\rxé日{}$\\"
    texts = ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 30))) for _ in range(8000)]
    literal = [t for t in texts if is_literal(t)]
    # Then every text the shortcut calls literal is one dynamicprompts gives back unchanged
    assert len(literal) > 500
    assert [t for t in literal if library_expansion(t) != [t]] == []


def test_planning_literal_prompts_does_not_import_dynamicprompts(tmp_path):
    job = tmp_path / "job.toml"
    job.write_text('model = "builtin:tiny"\nprompt = "a cat, (cute:1.2)"\n'
                   'negative_prompt = "blurry"\nseeds = "1-4"\n[axes]\nx = { cfg = "4-8" }\n')
    code = ("import sys; from sdfarm.scheduler.jobfile import load_job_file; "
            "from sdfarm.scheduler.plan import make_plan; "
            f"plan = make_plan(load_job_file({str(job)!r})); "
            "print(plan.images, 'dynamicprompts' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}).stdout.split()
    assert out == ["20", "False"]


def test_a_template_still_expands_through_the_library():
    assert expand_prompts("a {red|blue} car", mode="combinatorial", seed=0, wildcard_dir=None,
                          fail=ValueError) == ["a red car", "a blue car"]
