"""Images of other tools' own formats: ComfyUI's graph, InvokeAI, NovelAI, SwarmUI and Fooocus
read into the same RenderSpec as an A1111 text, their sampler names mapped to A1111's, their
other settings kept as extras. The fixtures in tests/fixtures/tools are written by hand after
what each tool writes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sdfarm.errors import ImageMetadataError
from sdfarm.metadata.generation import generation_from_chunks
from sdfarm.metadata.samplernames import from_invokeai, from_k_diffusion
from sdfarm.metadata.unapplied import unapplied_settings
from sdfarm.spec import RenderSpec

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "tools"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


def comfy(graph: dict) -> dict[str, str]:
    return {"prompt": json.dumps(graph), "workflow": "{}"}


def test_comfyui_settings_are_found_by_following_the_sampler_nodes_links():
    # Given a KSampler whose seed comes from a seed node, whose positive prompt passes through
    # a ControlNet to an encoder whose text comes from a string node, with a LoRA and CLIP skip
    gen = generation_from_chunks({"prompt": fixture("comfyui_hires_lora.json"), "workflow": "{}"})
    assert gen.source == "comfyui"
    assert gen.spec == RenderSpec(
        model="juggernautXL_v9",
        prompt="portrait of an old sailor, weathered face,\nrim light, (film grain:1.2) — 水彩",
        negative_prompt="blurry, lowres, (worst quality:1.4)", seed=884433221100,
        sampler="DPM++ 2M SDE", schedule="Karras", steps=28, cfg=6.5, width=832, height=1216,
        clip_skip=2)
    # Then what sdfarm cannot render is kept: the LoRA, the ControlNet and the hires pass
    assert gen.extra["Lora"] == "film_grain: 0.8"
    assert json.loads(gen.extra["ComfyUI ControlNetApplyAdvanced"])["strength"] == 0.6
    assert json.loads(gen.extra["ComfyUI KSampler 14"])["denoise"] == 0.45
    assert "Denoising strength" not in gen.extra  # the first pass started from noise


def test_comfyui_flux_graph_with_a_custom_sampler_reads_its_selector_scheduler_and_noise():
    gen = generation_from_chunks({"prompt": fixture("comfyui_flux_custom_advanced.json")})
    s = gen.spec
    assert (s.prompt, s.negative_prompt, s.seed, s.steps, s.cfg) == (
        "a lighthouse on a cliff at dawn", "", 219670278747233, 20, 1.0)
    assert (s.sampler, s.schedule, s.width, s.height, s.model) == ("Euler", "Simple", 1024, 768, "flux1-dev")
    assert gen.extra["Distilled CFG Scale"] == "3.5"


def test_comfyui_sampler_custom_and_advanced_samplers_and_a_zeroed_negative():
    graph = json.loads(fixture("comfyui_hires_lora.json"))
    graph["3"] = {"class_type": "SamplerCustom", "inputs": {
        "add_noise": True, "noise_seed": 5, "cfg": 4.0, "model": ["4", 0], "positive": ["6", 0],
        "negative": ["40", 0], "sampler": ["41", 0], "sigmas": ["42", 0], "latent_image": ["5", 0]}}
    graph["40"] = {"class_type": "ConditioningZeroOut", "inputs": {"conditioning": ["6", 0]}}
    graph["41"] = {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler_ancestral"}}
    graph["42"] = {"class_type": "KarrasScheduler", "inputs": {"steps": 12, "sigma_max": 14.6, "sigma_min": 0.03, "rho": 7}}
    s = generation_from_chunks(comfy(graph)).spec
    assert (s.seed, s.cfg, s.steps, s.sampler, s.schedule, s.negative_prompt) == (
        5, 4.0, 12, "Euler a", "Karras", "")
    graph["3"] = {"class_type": "KSamplerAdvanced", "inputs": {
        "add_noise": "enable", "noise_seed": 9, "steps": 30, "cfg": 7, "sampler_name": "uni_pc",
        "scheduler": "normal", "start_at_step": 0, "end_at_step": 10000,
        "return_with_leftover_noise": "disable", "model": ["4", 0], "positive": ["6", 0],
        "negative": ["7", 0], "latent_image": ["5", 0]}}
    gen = generation_from_chunks(comfy(graph))
    assert (gen.spec.seed, gen.spec.steps, gen.spec.sampler, gen.spec.schedule) == (
        9, 30, "UniPC", "Normal")
    assert not any("at_step" in key for key in gen.extra)  # the whole run: nothing to say
    graph["3"]["inputs"]["end_at_step"] = 24  # a base pass handing over to a refiner
    assert generation_from_chunks(comfy(graph)).extra["ComfyUI end_at_step"] == "24"


def test_comfyui_graphs_that_do_not_say_enough_are_refused_with_the_reason():
    graph = json.loads(fixture("comfyui_hires_lora.json"))
    no_sampler = {k: v for k, v in graph.items() if v["class_type"] != "KSampler"}
    with pytest.raises(ImageMetadataError, match="ComfyUI 'prompt' graph: no sampler node"):
        generation_from_chunks(comfy(no_sampler))
    graph["3"]["inputs"]["latent_image"] = ["99", 0]  # from an image, not an empty latent
    graph["14"]["inputs"]["latent_image"] = ["99", 0]
    with pytest.raises(ImageMetadataError, match="ComfyUI 'prompt' graph: no width, height"):
        generation_from_chunks(comfy(graph))
    with pytest.raises(ImageMetadataError, match="ComfyUI 'prompt' graph: not JSON"):
        generation_from_chunks({"prompt": "{cut"})
    with pytest.raises(ImageMetadataError, match="'workflow' without the 'prompt' graph"):
        generation_from_chunks({"workflow": "{}"})


def test_a_comfyui_link_loop_ends_instead_of_recursing_forever():
    graph = json.loads(fixture("comfyui_hires_lora.json"))
    graph["20"]["inputs"]["positive"] = ["20", 0]  # the ControlNet node feeds itself
    with pytest.raises(ImageMetadataError, match="no prompt"):
        generation_from_chunks(comfy(graph))


def test_invokeai_metadata_maps_its_scheduler_clip_skip_and_model():
    gen = generation_from_chunks({"invokeai_metadata": fixture("invokeai_metadata.json")})
    assert gen.spec == RenderSpec(
        model="dreamshaper-8", prompt="a cozy cabin in a snowy forest, warm light",
        negative_prompt="blurry, oversaturated", seed=2930587216, sampler="DPM++ 2M",
        schedule="Karras", steps=30, cfg=7.5, width=768, height=512, clip_skip=2)
    assert gen.extra["Lora"] == "add_detail: 0.75" and gen.extra["rand_device"] == "cpu"
    assert "seamless_x" not in gen.extra and "cfg_rescale_multiplier" not in gen.extra


def test_novelai_comment_with_its_source_as_the_model():
    chunks = {"Title": "NovelAI generated image", "Description": "1girl, silver hair",
              "Software": "NovelAI", "Source": "NovelAI Diffusion V3 4BDE2A90",
              "Comment": fixture("novelai_comment.json")}
    gen = generation_from_chunks(chunks)
    assert gen.spec == RenderSpec(
        model="NovelAI Diffusion V3", prompt="1girl, silver hair, library, sunlight, best quality",
        negative_prompt="lowres, bad anatomy, bad hands", seed=3862213453, sampler="DPM++ 2M",
        schedule="Karras", steps=28, cfg=5.0, width=832, height=1216)
    assert gen.extra["sm"] == "true" and gen.extra["Source"] == "NovelAI Diffusion V3 4BDE2A90"
    assert "controlnet_strength" not in gen.extra and "signed_hash" not in gen.extra


def test_swarmui_json_in_the_parameters_chunk():
    gen = generation_from_chunks({"parameters": fixture("swarmui_parameters.json")})
    assert gen.spec == RenderSpec(
        model="sd_xl_base_1.0", prompt="a red fox in tall grass, golden hour",
        negative_prompt="cartoon, lowres", seed=1542877314, sampler="DPM++ 2M",
        schedule="SGM Uniform", steps=30, cfg=6.0, width=1152, height=896, clip_skip=1)
    assert gen.extra["Lora"] == "fox_style: 0.6" and gen.extra["Version"] == "0.9.5.2"


def test_fooocus_json_renders_from_its_full_prompt_and_gives_a1111s_short_model_hash():
    gen = generation_from_chunks({"parameters": fixture("fooocus_parameters.json"),
                                  "fooocus_scheme": "fooocus"})
    s = gen.spec
    assert s.prompt == ("a lighthouse on a cliff, stormy sea, a lighthouse on a cliff, stormy "
                        "sea, cinematic, highly detailed, dramatic light, sharp focus")
    assert s.negative_prompt.endswith("(worst quality, low quality, normal quality, lowres, low details:1.2)")
    assert (s.seed, s.steps, s.cfg, s.width, s.height) == (7417723350164496466, 30, 4.0, 1152, 896)
    assert (s.sampler, s.schedule, s.model, s.model_hash) == (
        "DPM++ 2M SDE", "Karras", "juggernautXL_v8Rundiffusion", "aeb7e9e689")
    assert gen.extra["Raw prompt"] == "a lighthouse on a cliff, stormy sea"
    assert gen.extra["sharpness"] == "2.0" and "vae" not in gen.extra


@pytest.mark.parametrize("name, chunks, message", [
    ("seed as text", {"invokeai_metadata": '{"positive_prompt": "a", "seed": "twelve", "steps": 1, "cfg_scale": 7, "width": 64, "height": 64}'},
     "malformed 'invokeai_metadata' chunk: seed 'twelve' is not an integer"),
    ("no seed", {"invokeai_metadata": '{"positive_prompt": "a", "steps": 1, "cfg_scale": 7, "width": 64, "height": 64}'},
     "malformed 'invokeai_metadata' chunk: no seed"),
    ("not an object", {"invokeai_metadata": "[1, 2]"}, "'invokeai_metadata' chunk: not a JSON object"),
    ("steps out of range", {"parameters": json.dumps({"sui_image_params": {"prompt": "a", "seed": 1, "steps": 10**9, "cfgscale": 7, "width": 64, "height": 64}})},
     "malformed SwarmUI 'sui_image_params': steps 1000000000 is outside 1..10000"),
    ("unknown json", {"parameters": '{"hello": 1}'}, "'parameters' JSON of an unknown tool"),
    ("deep json", {"invokeai_metadata": "[" * 100_000}, "not JSON"),
])
def test_bad_values_in_tool_json_are_refused_naming_the_chunk_and_the_value(name, chunks, message):
    with pytest.raises(ImageMetadataError, match=message.replace("(", r"\(").replace(")", r"\)")):
        generation_from_chunks(chunks)


def test_other_tools_sampler_names_map_to_a1111s_and_unknown_ones_stay_as_written():
    assert from_k_diffusion("dpmpp_2m_sde_gpu", "karras") == ("DPM++ 2M SDE", "Karras")
    assert from_k_diffusion("k_euler_ancestral", "native") == ("Euler a", "Automatic")
    assert from_k_diffusion("euler", "sgm_uniform") == ("Euler", "SGM Uniform")
    assert from_k_diffusion("res_multistep", "linear_quadratic") == ("res_multistep", "linear_quadratic")
    assert from_invokeai("dpmpp_2m_k") == ("DPM++ 2M", "Karras")
    assert from_invokeai("pndm") == ("PLMS", None)
    assert from_invokeai("tcd") == ("tcd", None)


def test_a_rerun_is_warned_of_settings_that_change_pixels_not_of_descriptive_ones():
    extra = {"Hires upscale": "2", "Version": "v1.10.1", "Denoising strength": "0.45",
             "Hashes": "{}", "Lora hashes": "film: 0123", "Template": "a {cat|dog}", "App": "ComfyUI"}
    assert unapplied_settings(extra) == ["Hires upscale", "Denoising strength", "Lora hashes"]
    assert unapplied_settings(None) == []


def test_a_comfyui_graph_of_many_shared_combine_nodes_is_read_in_linear_time():
    # Given 200 combine nodes, each combining the one before with itself (2^200 paths)
    graph = json.loads(fixture("comfyui_hires_lora.json"))
    graph["100"] = {"class_type": "ConditioningCombine", "inputs": {
        "conditioning_1": ["6", 0], "conditioning_2": ["6", 0]}}
    for i in range(101, 300):
        graph[str(i)] = {"class_type": "ConditioningCombine", "inputs": {
            "conditioning_1": [str(i - 1), 0], "conditioning_2": [str(i - 1), 0]}}
    graph["3"]["inputs"]["positive"] = ["150", 0]
    gen = generation_from_chunks(comfy(graph))
    assert gen.spec.prompt.startswith("portrait of an old sailor")


def test_combine_nodes_that_double_the_prompt_at_each_level_are_refused_not_followed():
    graph = json.loads(fixture("comfyui_hires_lora.json"))
    c, d = "6", "7"
    for i in range(100, 160, 2):  # c' = c + d, d' = d + c: two new texts at every level
        graph[str(i)] = {"class_type": "ConditioningCombine", "inputs": {
            "conditioning_1": [c, 0], "conditioning_2": [d, 0]}}
        graph[str(i + 1)] = {"class_type": "ConditioningCombine", "inputs": {
            "conditioning_1": [d, 0], "conditioning_2": [c, 0]}}
        c, d = str(i), str(i + 1)
    graph["3"]["inputs"]["positive"] = [c, 0]
    with pytest.raises(ImageMetadataError, match="positive prompt longer than 1048576 characters"):
        generation_from_chunks(comfy(graph))


def test_custom_ksamplers_and_loaders_that_hold_their_prompts_are_read():
    # Given the Efficiency pack's KSampler and loader, which takes the prompts as text
    graph = {
        "1": {"class_type": "Efficient Loader", "inputs": {
            "ckpt_name": "dreamshaper_8.safetensors", "clip_skip": -2, "positive": "a castle, at night",
            "negative": "blurry", "empty_latent_width": 512, "empty_latent_height": 640,
            "batch_size": 1}},
        "2": {"class_type": "KSampler (Efficient)", "inputs": {
            "seed": 77, "steps": 25, "cfg": 7.0, "sampler_name": "dpmpp_2m", "scheduler": "karras",
            "denoise": 1.0, "preview_method": "auto", "vae_decode": "true", "model": ["1", 0],
            "positive": ["1", 1], "negative": ["1", 2], "latent_image": ["1", 3]}},
    }
    s = generation_from_chunks(comfy(graph)).spec
    assert (s.prompt, s.negative_prompt, s.seed, s.steps, s.sampler, s.schedule, s.model) == (
        "a castle, at night", "blurry", 77, 25, "DPM++ 2M", "Karras", "dreamshaper_8")
    assert (s.width, s.height, s.clip_skip) == (512, 640, 2)


#: What a careless or hostile writer may put where a value was expected.
_WRONG = [None, True, [], {}, "x", 1e308, ["9999", 0]]
_CHUNKS = {
    "comfyui_hires_lora.json": lambda t: {"prompt": t},
    "comfyui_flux_custom_advanced.json": lambda t: {"prompt": t},
    "invokeai_metadata.json": lambda t: {"invokeai_metadata": t},
    "novelai_comment.json": lambda t: {"Comment": t, "Software": "NovelAI", "Source": "NovelAI X"},
    "swarmui_parameters.json": lambda t: {"parameters": t},
    "fooocus_parameters.json": lambda t: {"parameters": t},
}


def _places(data, trail=()):
    items = data.items() if isinstance(data, dict) else enumerate(data) if isinstance(data, list) else ()
    for key, value in items:
        yield (*trail, key)
        yield from _places(value, (*trail, key))


@pytest.mark.parametrize("name", sorted(_CHUNKS))
def test_any_value_of_the_wrong_kind_anywhere_is_read_or_refused_never_a_traceback(name):
    # Given each fixture with each of its values, at any depth, replaced by a wrong one
    base = json.loads(fixture(name))
    for trail in list(_places(base)):
        for wrong in _WRONG:
            data = json.loads(fixture(name))
            parent = data
            for key in trail[:-1]:
                parent = parent[key]
            parent[trail[-1]] = wrong
            # Then the image is read, or refused with an ImageMetadataError (nothing else)
            try:
                generation_from_chunks(_CHUNKS[name](json.dumps(data)))
            except ImageMetadataError:
                pass
