"""Reading the ``parameters`` text (the infotext) that AUTOMATIC1111, Forge, SD.Next and sdfarm
write into PNGs: prompt, negative prompt, settings line and template blocks.

The fixtures in tests/fixtures/infotext are written by hand after what each tool writes.
"""

from __future__ import annotations

from pathlib import Path

from sdfarm.metadata.generation import generation_from_infotext
from sdfarm.metadata.infotext import parse_infotext, parse_settings_line

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "infotext"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


def test_a_full_a1111_text_keeps_prompt_commas_newlines_and_every_extra_setting():
    # Given an A1111 1.10 text with a three-line prompt, a two-line negative prompt and
    # hires fix, LoRA, TI and ADetailer settings
    info = parse_infotext(fixture("a1111_full.txt"))
    # Then the prompt and negative prompt are exactly the lines before the settings line
    assert info.prompt == ("masterpiece, best quality, (a lighthouse on a cliff:1.2), stormy sea,\n"
                           "dramatic sky, <lora:add_detail:0.6>, oil painting by Ivan Aivazovsky\n"
                           "BREAK foam, spray")
    assert info.negative_prompt == ("blurry, lowres, (worst quality:1.4),\n"
                                    "bad anatomy, watermark, easynegative")
    # And quoted values keep their commas and colons
    assert info.params["Lora hashes"] == "add_detail: 7c6bad76eb54"
    assert info.params["TI hashes"] == "easynegative: c74b4e810b03, bad_prompt: 6f35e7dd81"
    assert info.params["ADetailer prompt"] == "a smiling face, detailed eyes: sharp focus"
    assert info.params["Hires upscaler"] == "R-ESRGAN 4x+"
    assert list(info.params)[:5] == ["Steps", "Sampler", "Schedule type", "CFG scale", "Seed"]
    assert info.params["Version"] == "v1.10.1"


def test_a_text_without_negative_prompt_has_an_empty_one():
    info = parse_infotext(fixture("no_negative.txt"))
    assert info.prompt == "a red fox in the snow, winter forest, golden hour"
    assert info.negative_prompt == ""
    assert generation_from_infotext(info).spec.sampler == "Euler a"


def test_dynamic_prompts_template_blocks_after_the_settings_line_are_read_as_templates():
    # Given sd-dynamic-prompts' "Template:" lines (no space after the colon, the template
    # spanning two lines) appended after the settings line
    info = parse_infotext(fixture("dynamic_prompts_template.txt"))
    # Then the settings line is still found and the templates do not leak into the prompt
    assert info.prompt == "a photo of a cat wearing a hat, studio lighting"
    assert info.negative_prompt == "cartoon, drawing"
    assert info.params["Seed"] == "1001"
    assert info.template == "a photo of a {cat|dog|fox} wearing a __hats__,\nstudio lighting"
    assert info.negative_template == "cartoon, drawing"
    gen = generation_from_infotext(info)
    assert (gen.spec.sampler, gen.spec.schedule) == ("DPM++ SDE", "Karras")
    assert gen.extra["Template"] == info.template


def test_an_unterminated_quote_makes_the_line_a_prompt_line_not_settings():
    text = 'a cat\nSteps: 20, Sampler: Euler, Lora hashes: "x: 1, CFG scale: 7, Seed: 1, Size: 64x64'
    info = parse_infotext(text)
    assert info.settings_line is None and info.params == {}
    assert info.prompt == text


def test_a_prompt_line_that_looks_like_settings_stays_in_the_prompt():
    text = ("style: anime, mood: calm, light: soft\nNegative prompt: ugly\n"
            "Steps: 9, Sampler: Euler, CFG scale: 3, Seed: 8, Size: 64x64")
    info = parse_infotext(text)
    assert info.prompt == "style: anime, mood: calm, light: soft"
    assert info.params["Steps"] == "9"


def test_windows_line_endings_read_like_unix_ones():
    unix = fixture("a1111_full.txt")
    assert parse_infotext(unix.replace("\n", "\r\n")) == parse_infotext(unix)


def test_an_empty_prompt_with_only_a_negative_prompt():
    info = parse_infotext("Negative prompt: blurry\nSteps: 9, Sampler: Euler, CFG scale: 3, Seed: 8, Size: 64x64")
    assert (info.prompt, info.negative_prompt) == ("", "blurry")


def test_settings_lines_need_three_items_and_nothing_stray():
    assert parse_settings_line("Steps: 20, Seed: 1") is None
    assert parse_settings_line("Steps: 20, Seed: 1, Size: 64x64") == {"Steps": "20", "Seed": "1", "Size": "64x64"}
    assert parse_settings_line('Steps: 20, Seed: 1, Size: 64x64, "stray"') is None
    assert parse_settings_line('A: "x\\"y, z", B: [1, {"c": 2}], C: plain: with colon') == {
        "A": 'x"y, z', "B": '[1, {"c": 2}]', "C": "plain: with colon"}
