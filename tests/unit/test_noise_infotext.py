"""Variation seed and ENSD in the A1111 infotext: written as A1111 writes them, read back by
the reader ``sdfarm index`` uses, in both directions."""

from __future__ import annotations

from sdfarm.metadata.a1111 import a1111_parameters, sdfarm_chunk
from sdfarm.metadata.generation import generation_from_chunks, generation_from_infotext
from sdfarm.metadata.infotext import parse_infotext
from sdfarm.spec import RenderSpec

NOVELAI_STYLE = (
    "masterpiece, a cat\n"
    "Negative prompt: lowres\n"
    "Steps: 28, Sampler: Euler a, Schedule type: Automatic, CFG scale: 11, Seed: 2561234567, "
    "Size: 512x768, Model hash: 925997e9, Model: animefull-final-pruned, Clip skip: 2, ENSD: 31337"
)


def test_given_a_novelai_style_a1111_text_when_read_then_it_has_ensd_31337():
    spec = generation_from_infotext(parse_infotext(NOVELAI_STYLE)).spec
    assert spec.ensd == 31337 and spec.clip_skip == 2 and spec.seed == 2561234567
    assert (spec.subseed, spec.subseed_strength) == (0, 0.0)


def test_given_a_variation_seed_text_when_read_then_subseed_and_strength_are_typed():
    text = NOVELAI_STYLE.replace(", Clip skip", ", Variation seed: 123, Variation seed strength: 0.3, Clip skip")
    spec = generation_from_infotext(parse_infotext(text)).spec
    assert (spec.subseed, spec.subseed_strength, spec.ensd) == (123, 0.3, 31337)
    assert isinstance(spec.subseed_strength, float)


def test_given_a_variation_seed_at_strength_0_in_a_text_when_read_then_it_is_dropped():
    text = NOVELAI_STYLE.replace(", Clip skip", ", Variation seed: 123, Variation seed strength: 0, Clip skip")
    spec = generation_from_infotext(parse_infotext(text)).spec
    assert (spec.subseed, spec.subseed_strength) == (0, 0.0)


def test_given_noise_controls_when_written_and_read_back_then_the_spec_round_trips():
    spec = RenderSpec(model="builtin:tiny", prompt="a cat", seed=7, subseed=123,
                      subseed_strength=0.3, ensd=31337, model_hash="0123456789")
    text = a1111_parameters(spec, version="sdfarm test")
    assert "Variation seed: 123, Variation seed strength: 0.3, ENSD: 31337, Version" in text
    read = generation_from_infotext(parse_infotext(text))
    assert read.spec == spec and read.spec.key == spec.key
    assert "ENSD" not in read.extra and "Variation seed" not in read.extra
    exact = generation_from_chunks({"sdfarm": sdfarm_chunk(spec), "parameters": text})
    assert exact.source == "sdfarm" and exact.spec == spec


def test_given_an_sdfarm_chunk_of_an_earlier_version_when_read_then_the_noise_controls_are_0():
    old = RenderSpec(model="builtin:tiny", prompt="a cat", seed=7)
    chunk = sdfarm_chunk(old).replace('"ensd": 0, ', "").replace('"subseed": 0, ', "")
    chunk = chunk.replace('"subseed_strength": 0.0, ', "")
    assert "ensd" not in chunk and "subseed" not in chunk
    read = generation_from_chunks({"sdfarm": chunk})
    assert read.spec == old and read.spec.key == old.key
