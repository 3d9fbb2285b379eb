"""Grid axes: A1111 X/Y/Z-plot value syntax, typed values, labels, and one-line errors."""

from __future__ import annotations

import tomllib

import pytest

from sdfarm.errors import JobFileError
from sdfarm.scheduler.axes import (
    AXIS_PARAMS,
    Axis,
    apply_axis_value,
    axis_label,
    check_prompt_sr,
    parse_axes,
    parse_values,
)
from sdfarm.spec import RenderSpec

FILE = "jobs/grid.toml"


def fail(key: str, problem: str) -> JobFileError:
    return JobFileError(FILE, key, problem)


def axes_of(toml: str) -> list[Axis]:
    """Given the [axes] part of a job file, the axes it means."""
    return parse_axes(tomllib.loads(toml).get("axes"), fail)


def values_of(param: str, raw: object) -> tuple:
    return parse_values(param, raw, lambda problem: ValueError(problem))


def error_of(toml: str) -> str:
    with pytest.raises(JobFileError) as info:
        axes_of(toml)
    message = str(info.value)
    assert "\n" not in message, "errors are one line"
    assert message.startswith(f"{FILE}: axes"), "errors name the file and the axis"
    return message


# --- the job file's [axes] table ---------------------------------------------------------

def test_the_design_example_gives_four_typed_axes_in_slot_order():
    axes = axes_of('''
        [axes]
        x = { cfg = "4-12 (+2)" }
        y = { steps = [10, 20, 30, 40] }
        z = { sampler = ["Euler a", "DPM++ 2M Karras"] }
        [[axes.extra]]
        clip_skip = [1, 2]
    ''')
    assert [(a.slot, a.param) for a in axes] == [
        ("x", "cfg"), ("y", "steps"), ("z", "sampler"), ("extra1", "clip_skip")]
    assert axes[0].values == (4.0, 6.0, 8.0, 10.0, 12.0)
    assert all(type(v) is float for v in axes[0].values)
    assert axes[1].values == (10, 20, 30, 40)
    assert axes[2].values == ("Euler a", "DPM++ 2M Karras")
    assert axes[3].values == (1, 2)


def test_no_axes_table_means_no_axes():
    assert parse_axes(None, fail) == []
    assert axes_of("[axes]") == []


def test_several_extra_axes_are_numbered_from_one():
    axes = axes_of('''
        [[axes.extra]]
        clip_skip = [1, 2]
        [[axes.extra]]
        seed = "1-3"
    ''')
    assert [a.slot for a in axes] == ["extra1", "extra2"]
    assert axes[1].key == "axes.extra[2].seed"


def test_an_axis_may_also_be_written_as_a_section():
    (axis,) = axes_of('[axes.y]\nsteps = "10-30 (+10)"')
    assert (axis.slot, axis.values) == ("y", (10, 20, 30))


# --- value syntax -------------------------------------------------------------------------

@pytest.mark.parametrize("raw, expected", [
    ("1-5", (1, 2, 3, 4, 5)),
    ("1-10 (+2)", (1, 3, 5, 7, 9)),
    ("1-10(+3)", (1, 4, 7, 10)),
    ("10-1 (-3)", (10, 7, 4, 1)),
    ("5-1", (5, 4, 3, 2, 1)),
    ("1-10 [4]", (1, 4, 7, 10)),
    ("10-1 [4]", (10, 7, 4, 1)),
    ("1-4 [3]", (1, 3, 4)),  # 2.5 rounds half up, the same on every machine
    ("7-7 [1]", (7,)),
    ("10, 20, 30", (10, 20, 30)),
    (" 10 ,15-25 (+5), 40 ", (10, 15, 20, 25, 40)),
    ("12", (12,)),
    ([10, 20], (10, 20)),
    (25, (25,)),
])
def test_integer_values_accept_a1111_ranges_and_lists(raw, expected):
    values = values_of("steps", raw)
    assert values == expected
    assert all(type(v) is int for v in values)


@pytest.mark.parametrize("raw, expected", [
    ("4.5-7.5 (+0.5)", (4.5, 5.0, 5.5, 6.0, 6.5, 7.0, 7.5)),
    ("5-8 [4]", (5.0, 6.0, 7.0, 8.0)),
    ("1-2 [3]", (1.0, 1.5, 2.0)),
    ("0.1-0.3 (+0.1)", (0.1, 0.2, 0.3)),  # exact decimals, not 0.30000000000000004
    ("8-4 (-1.5)", (8.0, 6.5, 5.0)),
    ("4-6", (4.0, 5.0, 6.0)),
    ("7, 7.5, .5", (7.0, 7.5, 0.5)),
    ([4, 7.5], (4.0, 7.5)),
])
def test_cfg_takes_float_ranges_and_gives_floats(raw, expected):
    values = values_of("cfg", raw)
    assert values == expected
    assert all(type(v) is float for v in values)


def test_a_stepped_range_stops_at_the_last_value_not_past_the_end():
    assert values_of("steps", "1-10 (+4)") == (1, 5, 9)
    assert values_of("cfg", "4-5 (+0.3)") == (4.0, 4.3, 4.6, 4.9)


def test_sampler_values_are_canonical_a1111_names_and_may_contain_spaces():
    assert values_of("sampler", "euler a, dpm++ 2m karras") == ("Euler a", "DPM++ 2M Karras")


def test_string_values_may_hold_commas_when_quoted_as_in_a1111():
    assert values_of("negative_prompt", '"blurry, lowres", ugly') == ("blurry, lowres", "ugly")
    assert values_of("negative_prompt", ["", "blurry, lowres"]) == ("", "blurry, lowres")


def test_size_values_are_width_height_pairs():
    assert values_of("size", "512x768, 768X512") == ((512, 768), (768, 512))
    assert values_of("size", ["1024x1024"]) == ((1024, 1024),)


def test_seed_width_height_clip_skip_and_model_values():
    assert values_of("seed", "1000-1002, 7") == (1000, 1001, 1002, 7)
    assert values_of("width", "512-1024 (+256)") == (512, 768, 1024)
    assert values_of("height", [640]) == (640,)
    assert values_of("clip_skip", "1-2") == (1, 2)
    assert values_of("model", "builtin:tiny, runwayml/stable-diffusion-v1-5") == (
        "builtin:tiny", "runwayml/stable-diffusion-v1-5")


def test_prompt_sr_keeps_the_search_term_as_its_own_first_cell():
    (axis,) = axes_of('[axes]\nx = { prompt_sr = "cat, dog, fox" }')
    assert axis.values == ("cat", "dog", "fox")


# --- labels -------------------------------------------------------------------------------

def test_labels_read_name_colon_value_and_prompt_sr_shows_the_text():
    axes = axes_of('''
        [axes]
        x = { cfg = "7, 7.5" }
        y = { steps = [10] }
        z = { prompt_sr = ["cat", "red dog"] }
        [[axes.extra]]
        sampler = "Euler a"
        [[axes.extra]]
        size = "512x768"
        [[axes.extra]]
        model = ["/models/dream.safetensors", "org/repo"]
    ''')
    assert [a.labels for a in axes] == [
        ("CFG: 7", "CFG: 7.5"), ("Steps: 10",), ("cat", "red dog"), ("Sampler: Euler a",),
        ("Size: 512x768",), ("Model: dream.safetensors", "Model: repo")]
    assert axis_label("negative_prompt", "") == "Negative prompt: (none)"
    assert axis_label("clip_skip", 2) == "Clip skip: 2"
    assert axis_label("seed", 42) == "Seed: 42"


# --- errors: one line, naming the axis, the value and what is allowed ---------------------

@pytest.mark.parametrize("axes, key, fragments", [
    ('x = { steps = "1-" }', "axes.x.steps", ["'1-' is not a value or a range", "10-50 (+10)"]),
    ('x = { steps = "a-b" }', "axes.x.steps", ["'a-b' is not a value or a range", "integers from 1 to 1000"]),
    ('x = { steps = "-5" }', "axes.x.steps", ["'-5' is not a value or a range"]),
    ('x = { steps = "1-10 (+0)" }', "axes.x.steps", ["'1-10 (+0)' has step 0"]),
    ('x = { steps = "1-10 (-2)" }', "axes.x.steps", ["'1-10 (-2)' has a step going the wrong way", "positive step"]),
    ('x = { steps = "10-1 (+2)" }', "axes.x.steps", ["'10-1 (+2)'", "negative step"]),
    ('x = { steps = "1-10 [0]" }', "axes.x.steps", ["'1-10 [0]' asks for 0 values", "at least 1"]),
    ('x = { steps = "1-2 [5]" }', "axes.x.steps", ["'1-2 [5]' asks for 5 values", "2 integers"]),
    ('x = { steps = [1, "a"] }', "axes.x.steps", ["mixes types", "an integer 1", "a string 'a'"]),
    ('x = { steps = [] }', "axes.x.steps", ["has no values", "integers from 1 to 1000"]),
    ('x = { steps = "" }', "axes.x.steps", ["has no values"]),
    ('x = { steps = "10,,20" }', "axes.x.steps", ["empty item in '10,,20'"]),
    ('x = { sampler = "Euler a,, DDIM" }', "axes.x.sampler", ["empty item"]),
    ('x = { steps = [10, 20.5] }', "axes.x.steps", ["20.5 is a fractional number", "integers from 1 to 1000"]),
    ('x = { steps = "7.5" }', "axes.x.steps", ["'7.5' has a fractional number"]),
    ('x = { steps = "1-10 (+1.5)" }', "axes.x.steps", ["'1-10 (+1.5)' has a fractional number"]),
    ('x = { steps = [0, 10] }', "axes.x.steps", ["steps value 0 is out of range", "from 1 to 1000"]),
    ('x = { steps = [10, 10] }', "axes.x.steps", ["repeats", "Steps: 10"]),
    ('x = { steps = true }', "axes.x.steps", ["got a boolean"]),
    ('x = { cfg = "40-60 (+10)" }', "axes.x.cfg", ["cfg value 60.0 is not allowed", "from 0 to 50"]),
    ('x = { width = "500, 512" }', "axes.x.width", ["width value 500 is out of range", "multiples of 8"]),
    ('x = { size = "512*768" }', "axes.x.size", ["'512*768' is not WIDTHxHEIGHT", "512x768"]),
    ('x = { size = "512x770" }', "axes.x.size", ["'512x770' is out of range", "multiples of 8"]),
    ('x = { clip_skip = "1-13" }', "axes.x.clip_skip", ["clip_skip value 13", "from 1 to 12"]),
    ('x = { seed = "1-100000" }', "axes.x.seed", ["'1-100000' has 100000 values", "at most 10000"]),
    ('x = { sampler = "Euler b" }', "axes.x.sampler", ["unknown sampler 'Euler b'", "known samplers: Euler, Euler a"]),
    ('x = { sampler = [1] }', "axes.x.sampler", ["sampler value 1 is not a string"]),
    ('x = { model = ["a", " "] }', "axes.x.model", ["empty model value"]),
    ('x = { prompt_sr = ["", "dog"] }', "axes.x.prompt_sr", ["search term", "must not be empty"]),
    ('x = { colour = [1] }', "axes.x.colour", ["unknown axis parameter", "allowed: lora_weight, lora, cfg, steps, sampler"]),
    ('x = {}', "axes.x", ["exactly one parameter, got 0", "allowed: lora_weight, lora, cfg"]),
    ('x = { cfg = 7, steps = 20 }', "axes.x", ["exactly one parameter, got 2 (cfg, steps)"]),
    ('x = [1, 2]', "axes.x", ["must be a table with one parameter"]),
    ('w = { cfg = [7] }', "axes.w", ["unknown axis; allowed: x, y, z, extra"]),
    ('x = { cfg = [7] }\ny = { cfg = [8] }', "axes.y.cfg", ["already varied by axes.x.cfg"]),
    ('x = { size = "512x512" }\n[[axes.extra]]\nheight = [512]', "axes.extra[1].height",
     ["already varied by axes.x.size"]),
    ('extra = 3', "axes.extra", ["list of tables", "[[axes.extra]]"]),
])
def test_bad_axes_are_one_line_errors_naming_axis_value_and_what_is_allowed(axes, key, fragments):
    message = error_of(f"[axes]\n{axes}")
    assert message.startswith(f"{FILE}: {key}: "), message
    for fragment in fragments:
        assert fragment in message, message


def test_axes_that_is_not_a_table_is_an_error():
    with pytest.raises(JobFileError, match=r"^jobs/grid.toml: axes: must be a table"):
        parse_axes([1, 2], fail)


def test_every_axis_param_is_described_for_error_messages():
    assert set(AXIS_PARAMS) == {"lora_weight", "lora", "cfg", "steps", "sampler", "seed",
                                "width", "height", "size", "clip_skip", "model", "negative_prompt", "prompt_sr", "subseed",
                                "subseed_strength", "ensd", "schedule", "eta", "guidance",
                                "shift", "vae", "denoise", "hires_denoise", "hires_steps",
                                "hires_scale"}


# --- applying a value to a spec -----------------------------------------------------------

BASE = RenderSpec(model="builtin:tiny", prompt="a cat on a mat", seed=1, model_hash="abc")


def test_applying_values_sets_the_typed_field_on_the_spec():
    def applied(toml: str, index: int = 0) -> RenderSpec:
        (axis,) = axes_of(f"[axes]\nx = {toml}")
        return apply_axis_value(BASE, axis, axis.values[index], BASE.prompt)

    assert applied('{ cfg = "4, 5" }', 1).cfg == 5.0
    assert applied('{ steps = [30] }').steps == 30
    assert applied('{ sampler = "ddim" }').sampler == "DDIM"
    assert applied('{ seed = [99] }').seed == 99
    assert applied('{ clip_skip = [2] }').clip_skip == 2
    assert applied('{ negative_prompt = ["ugly"] }').negative_prompt == "ugly"
    sized = applied('{ size = "640x384" }')
    assert (sized.width, sized.height) == (640, 384)


def test_a_model_value_drops_the_base_models_hash():
    (axis,) = axes_of('[axes]\nx = { model = ["other/model"] }')
    spec = apply_axis_value(BASE, axis, "other/model", BASE.prompt)
    assert (spec.model, spec.model_hash) == ("other/model", None)


def test_prompt_sr_replaces_the_search_term_in_the_original_prompt():
    (axis,) = axes_of('[axes]\nx = { prompt_sr = "cat, dog" }')
    cells = [apply_axis_value(BASE, axis, v, BASE.prompt).prompt for v in axis.values]
    assert cells == ["a cat on a mat", "a dog on a mat"]


def test_prompt_sr_search_term_must_occur_in_the_prompt():
    (axis,) = axes_of('[axes]\nz = { prompt_sr = ["horse", "dog"] }')
    check_prompt_sr(axis, "a horse in a field", fail)
    with pytest.raises(JobFileError) as info:
        check_prompt_sr(axis, "a cat on a mat", fail)
    message = str(info.value)
    assert message.startswith(f"{FILE}: axes.z.prompt_sr: search term 'horse'")
    assert "'a cat on a mat'" in message and "\n" not in message


def test_prompt_sr_check_ignores_other_axes():
    (axis,) = axes_of('[axes]\nx = { steps = [10] }')
    check_prompt_sr(axis, "anything", fail)


# --- noise controls as axes -----------------------------------------------------------------

NOISE_JOB = 'model = "builtin:tiny"\nprompt = "a cat"\nseeds = [5]\n'


def planned(text: str):
    from sdfarm.scheduler.jobfile import parse_job_file
    from sdfarm.scheduler.plan import make_plan

    return make_plan(parse_job_file(text, FILE))


def test_given_a_strength_axis_0_to_1_in_5_when_planned_then_5_cells_with_variation_labels():
    [axis] = axes_of('[axes]\nx = { subseed_strength = "0-1 [5]" }')
    assert axis.values == (0.0, 0.25, 0.5, 0.75, 1.0)
    assert axis.labels[1] == "Variation strength: 0.25"
    plan = planned(NOISE_JOB + 'subseed = 77\n[axes]\nx = { subseed_strength = "0-1 [5]" }\n')
    by_strength = {s.subseed_strength: s for s in plan.specs}
    assert sorted(by_strength) == [0.0, 0.25, 0.5, 0.75, 1.0]
    # The strength-0 cell is the plain seed (no variation seed); the others keep it.
    assert by_strength[0.0].subseed == 0
    assert all(by_strength[v].subseed == 77 for v in (0.25, 0.5, 0.75, 1.0))
    assert len(set(plan.keys)) == 5


def test_given_a_subseed_axis_and_a_strength_axis_when_planned_then_every_cell_keeps_its_subseed():
    plan = planned(NOISE_JOB + '[axes]\nx = { subseed = [1, 2] }\ny = { subseed_strength = [0, 0.5] }\n')
    pairs = sorted((s.subseed, s.subseed_strength) for s in plan.specs)
    assert pairs == [(0, 0.0), (0, 0.0), (1, 0.5), (2, 0.5)]


def test_given_an_ensd_axis_when_planned_then_each_cell_has_its_ensd_and_label():
    [axis] = axes_of('[axes]\nx = { ensd = [0, 31337] }')
    assert axis.labels == ("ENSD: 0", "ENSD: 31337")
    plan = planned(NOISE_JOB + '[axes]\nx = { ensd = [0, 31337] }\n')
    assert sorted(s.ensd for s in plan.specs) == [0, 31337]
    assert len(plan.batches) == 1  # ENSD may differ within a forward pass


def test_an_ensd_axis_refuses_a_negative_delta():
    assert "ensd" in error_of('[axes]\nx = { ensd = [-1] }')
