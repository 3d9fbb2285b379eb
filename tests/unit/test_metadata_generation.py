"""From the text chunks of a PNG to an ImageGeneration: typed settings, extras, the sdfarm
chunk before the ``parameters`` text, and sampler names as sdfarm or the writing tool spells them.

The fixtures in tests/fixtures/infotext are written by hand after what each tool writes.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sdfarm.errors import ImageMetadataError
from sdfarm.metadata.a1111 import a1111_parameters, sdfarm_chunk
from sdfarm.metadata.generation import (
    generation_from_chunks,
    generation_from_infotext,
    sampler_as_written,
)
from sdfarm.metadata.infotext import parse_infotext
from sdfarm.spec import RenderSpec

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "infotext"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


def test_the_settings_become_typed_fields_and_the_rest_are_kept_as_extras():
    gen = generation_from_infotext(parse_infotext(fixture("a1111_full.txt")))
    assert gen.spec == RenderSpec(
        model="v1-5-pruned-emaonly", model_hash="6ce0161689", prompt=gen.spec.prompt,
        negative_prompt=gen.spec.negative_prompt, seed=3141592653, sampler="DPM++ 2M", schedule="Karras",
        steps=28, cfg=6.5, width=512, height=768, clip_skip=2,
        loras="add_detail:0.6", lora_hashes="add_detail: 7c6bad76eb54",
        # issue 11: VAE and embeddings, as A1111 writes them
        vae="vae-ft-mse-840000-ema-pruned.safetensors", vae_hash="735e4c3a44",
        ti_hashes="easynegative: c74b4e810b03, bad_prompt: 6f35e7dd81")
    assert gen.extra["Hires upscale"] == "2" and gen.extra["Denoising strength"] == "0.45"
    assert gen.extra["ADetailer model"] == "face_yolov8n.pt"
    assert not {"Steps", "Sampler", "Schedule type", "Seed", "Size", "Model",
                "Lora hashes"} & set(gen.extra)


def test_unquoted_json_values_and_unknown_samplers_are_kept_as_written():
    # Given a Forge text with a sampler and schedule sdfarm cannot render and civitai's
    # unquoted Hashes object
    info = parse_infotext(fixture("forge_unknown_sampler.txt"))
    assert info.params["Hashes"] == '{"vae": "63aeecb90f", "model": "31e35c80fc"}'
    assert info.params["Distilled CFG Scale"] == "3.5"
    gen = generation_from_infotext(info)
    # Then the sampler and its schedule are recorded apart
    assert (gen.spec.sampler, gen.spec.schedule) == ("DPM++ 3M SDE", "Exponential")
    assert (gen.spec.width, gen.spec.height, gen.spec.cfg) == (832, 1216, 4.5)


def test_sd_next_order_of_settings_and_its_own_keys_parse():
    gen = generation_from_infotext(parse_infotext(fixture("sdnext_restart.txt")))
    assert gen.spec.sampler == "Restart"
    assert (gen.spec.seed, gen.spec.steps, gen.spec.cfg) == (5, 24, 8.0)
    assert gen.spec.model == "dreamshaper_8" and gen.spec.model_hash == "879db523c3"
    assert gen.extra["App"] == "SD.Next"


@pytest.mark.parametrize("name, message", [
    ("malformed_no_settings.txt", "no settings line"),
    ("malformed_bad_seed.txt", "Seed 'twelve' is not an integer"),
])
def test_malformed_texts_are_refused_with_the_reason(name, message):
    with pytest.raises(ImageMetadataError, match=message):
        generation_from_chunks({"parameters": fixture(name)})


def test_a_settings_line_missing_a_required_setting_is_refused_naming_it():
    with pytest.raises(ImageMetadataError, match="no Seed"):
        generation_from_chunks({"parameters": "a cat\nSteps: 20, Sampler: Euler, CFG scale: 7, Size: 64x64"})


def test_sdfarm_writes_what_it_reads_back_exactly():
    spec = RenderSpec(model="/models/dream.safetensors", model_hash="0123456789",
                      prompt="a cat, sitting\non a mat: (cute:1.2)", negative_prompt="ugly,\nbad",
                      seed=2**40 + 3, sampler="DPM++ 2M SDE", schedule="Karras", steps=33, cfg=6.5,
                      width=640, height=384, clip_skip=3)
    from_text = generation_from_chunks({"parameters": a1111_parameters(spec, version="sdfarm 0.1.0")})
    assert from_text.spec == spec.replace(model="dream") and from_text.source == "parameters"
    assert from_text.extra == {"Version": "sdfarm 0.1.0"}
    # The sdfarm chunk wins when present: it has the model reference, not just its name
    both = generation_from_chunks({"parameters": a1111_parameters(spec),
                                   "sdfarm": sdfarm_chunk(spec, job_id=1, model_config="/cfg")})
    assert both.spec == spec and both.source == "sdfarm" and both.model_config == "/cfg"


def test_a_broken_sdfarm_chunk_falls_back_to_the_parameters_text():
    spec = RenderSpec(model="builtin:tiny", prompt="p", seed=1)
    gen = generation_from_chunks({"sdfarm": "{not json", "parameters": a1111_parameters(spec)})
    assert gen.source == "parameters" and gen.spec.seed == 1
    with pytest.raises(ImageMetadataError, match="malformed 'sdfarm' chunk"):
        generation_from_chunks({"sdfarm": '{"spec": {"model": "m", "prompt": "p", "seed": "x"}}'})


def test_known_samplers_take_sdfarm_names_and_unknown_ones_their_written_names():
    assert sampler_as_written("DPM++ 2M", "karras") == ("DPM++ 2M", "Karras")
    assert sampler_as_written("euler  a", None) == ("Euler a", "Automatic")
    assert sampler_as_written("Restart", "Automatic") == ("Restart", "Automatic")
    assert sampler_as_written("DPM++ 2M", "Align Your Steps") == ("DPM++ 2M", "Align Your Steps")
    # A1111 before 1.9 wrote the schedule into the sampler's name
    assert sampler_as_written("DPM++ 2M Karras", None) == ("DPM++ 2M", "Karras")


def test_forges_distilled_cfg_scale_without_a_family_is_kept_as_written():
    # Forge writes it on every image, SDXL ones included: it does not say the model is Flux
    gen = generation_from_infotext(parse_infotext(fixture("forge_unknown_sampler.txt")))
    assert (gen.spec.family, gen.spec.guidance) == ("sd1", None)
    assert gen.extra["Distilled CFG Scale"] == "3.5"


def test_an_a1111_image_without_family_keys_reads_as_sd1():
    spec = generation_from_infotext(parse_infotext(fixture("a1111_full.txt"))).spec
    assert (spec.family, spec.prediction, spec.guidance, spec.shift) == ("sd1", "epsilon", None, None)


def test_each_family_writes_what_it_reads_back():
    for family, prediction, guidance, shift in [("sdxl", "v", None, None), ("sd2", "v", None, None),
                                                ("flux-schnell", "flow", None, 2.5),
                                                ("flux-dev", "flow", 4.5, None),
                                                ("sd3", "flow", None, 3.0)]:
        spec = RenderSpec(model="m", prompt="a cat", seed=1, family=family,
                          prediction=prediction, guidance=guidance, shift=shift, cfg=4.5)
        text = a1111_parameters(spec, version="sdfarm test")
        assert generation_from_infotext(parse_infotext(text)).spec == spec, text


def test_a_family_sdfarm_does_not_know_is_kept_as_written_among_the_extras():
    text = ("a cat\nSteps: 20, Sampler: Euler, CFG scale: 5, Seed: 7, Size: 1024x1024, "
            "Model family: hunyuan, Model: hy.safetensors")
    gen = generation_from_infotext(parse_infotext(text))
    assert gen.spec.family == "sd1" and gen.extra["Model family"] == "hunyuan"


def test_an_sd_next_text_without_a_sampler_records_the_sampler_as_unknown():
    # SD.Next leaves "Sampler:" out when the model's default one ran
    text = fixture("sdnext_restart.txt").replace("Sampler: Restart, ", "")
    assert "Sampler" not in text
    spec = generation_from_chunks({"parameters": text}).spec
    assert (spec.sampler, spec.schedule, spec.seed, spec.steps, spec.cfg) == ("unknown", "Automatic", 5, 24, 8.0)


def test_setting_names_are_read_whatever_their_letter_case():
    text = "a cat\nSteps: 20, Sampler: Euler, CFG Scale: 4.5, Seed: 7, Size: 64x64, clip skip: 2"
    gen = generation_from_chunks({"parameters": text})
    assert (gen.spec.cfg, gen.spec.clip_skip) == (4.5, 2) and gen.extra == {}
    # The exact spelling wins; the other is kept as written
    both = generation_from_chunks({"parameters": text.replace("Seed: 7", "Seed: 7, CFG scale: 6")})
    assert both.spec.cfg == 6 and both.extra == {"CFG Scale": "4.5"}
