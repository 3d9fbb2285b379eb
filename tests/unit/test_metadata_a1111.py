"""The A1111 ``parameters`` text: written as AUTOMATIC1111 writes it, and read back."""

from __future__ import annotations

from sdfarm.metadata.a1111 import a1111_parameters, quote
from sdfarm.metadata.generation import generation_from_infotext
from sdfarm.metadata.infotext import parse_infotext
from sdfarm.spec import RenderSpec


def test_the_text_matches_a1111_layout_byte_for_byte():
    spec = RenderSpec(model="/ckpt/v1-5-pruned-emaonly.safetensors", model_hash="6ce0161689",
                      prompt="a lighthouse", negative_prompt="blurry", seed=1234,
                      sampler="DPM++ 2M", schedule="Karras", steps=20, cfg=7, width=512, height=768)
    assert a1111_parameters(spec) == (
        "a lighthouse\n"
        "Negative prompt: blurry\n"
        "Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 1234, "
        "Size: 512x768, Model hash: 6ce0161689, Model: v1-5-pruned-emaonly"
    )


def test_no_negative_prompt_line_when_empty_and_clip_skip_only_when_it_skips():
    spec = RenderSpec(model="builtin:tiny", prompt="p", seed=1, clip_skip=2)
    text = a1111_parameters(spec)
    assert "Negative prompt" not in text
    assert text.endswith('Model: "builtin:tiny", Clip skip: 2')
    assert "Clip skip" not in a1111_parameters(spec.replace(clip_skip=1))


def test_values_with_commas_colons_or_newlines_are_json_quoted():
    assert quote("plain") == "plain"
    assert quote("a, b") == '"a, b"'
    assert quote("x: y") == '"x: y"'


def test_every_field_round_trips_including_multiline_prompts_with_commas():
    spec = RenderSpec(model="builtin:tiny", model_hash="abcdef1234",
                      prompt="a cat, sitting\non a mat: (cute:1.2)", negative_prompt="ugly,\nbad",
                      seed=2**40 + 3, sampler="DPM++ SDE", schedule="Karras", steps=33, cfg=6.5,
                      width=640, height=384, clip_skip=3)
    info = parse_infotext(a1111_parameters(spec, version="sdfarm 0.1.0"))
    assert info.params["Version"] == "sdfarm 0.1.0"
    assert generation_from_infotext(info).spec == spec
    assert generation_from_infotext(info).spec.key == spec.key
