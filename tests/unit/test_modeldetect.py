"""Model-family detection from a folder's JSON files or a single file's safetensors header.

The checkpoints here are headers written by hand (key names, shapes, metadata) with no tensor
data at all: detection must never need any.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from sdfarm.errors import ModelError
from sdfarm.modeldetect import Detection, detect_file, detect_folder

UNET = "model.diffusion_model."

#: Keys (→ shapes) of the original (LDM) layouts, the few that tell families apart plus
#: neighbours a real file has, so that no test passes on one lonely key.
SD1 = {
    UNET + "input_blocks.0.0.weight": [320, 4, 3, 3],
    UNET + "input_blocks.2.1.transformer_blocks.0.attn2.to_k.weight": [320, 768],
    UNET + "output_blocks.11.0.skip_connection.weight": [320, 640, 1, 1],
    "cond_stage_model.transformer.text_model.embeddings.position_embedding.weight": [77, 768],
    "first_stage_model.encoder.conv_in.weight": [128, 3, 3, 3],
}
SD2 = {
    **SD1,
    UNET + "input_blocks.2.1.transformer_blocks.0.attn2.to_k.weight": [320, 1024],
    "cond_stage_model.model.token_embedding.weight": [49408, 1024],
}
SDXL = {
    UNET + "input_blocks.0.0.weight": [320, 4, 3, 3],
    UNET + "label_emb.0.0.weight": [1280, 2816],
    UNET + "output_blocks.8.0.skip_connection.weight": [320, 640, 1, 1],
    "conditioner.embedders.0.transformer.text_model.embeddings.position_embedding.weight":
        [77, 768],
    "conditioner.embedders.1.model.positional_embedding": [77, 1280],
    "conditioner.embedders.1.model.transformer.resblocks.9.mlp.c_proj.bias": [1280],
    "first_stage_model.encoder.conv_in.weight": [128, 3, 3, 3],
}
SDXL_REFINER = {
    UNET + "input_blocks.0.0.weight": [384, 4, 3, 3],
    UNET + "label_emb.0.0.weight": [1536, 2560],
    "conditioner.embedders.0.model.text_projection": [1280, 1280],
    "conditioner.embedders.0.model.transformer.resblocks.9.mlp.c_proj.bias": [1280],
}
FLUX_SCHNELL = {
    "img_in.weight": [3072, 64],
    "double_blocks.0.img_attn.norm.key_norm.scale": [128],
    "single_blocks.0.linear1.weight": [21504, 3072],
}
FLUX_DEV = {**FLUX_SCHNELL, "guidance_in.in_layer.bias": [3072]}
SD3 = {
    "joint_blocks.0.context_block.adaLN_modulation.1.bias": [9216],
    "pos_embed": [1, 36864, 1536],
    "x_embedder.proj.weight": [1536, 16, 2, 2],
}

RENDERS = "sdfarm renders sd1, sd2, sdxl, flux-dev, flux-schnell, sd3"


def write_checkpoint(path: Path, keys: dict[str, list[int]] | list[str], *,
                     metadata: dict[str, str] | None = None) -> Path:
    """A safetensors file with these tensor names (shapes given or ``[1]``) and no data: the
    8-byte little-endian header length, then the JSON header."""
    shapes = keys if isinstance(keys, dict) else dict.fromkeys(keys, [1])
    header: dict[str, object] = {
        name: {"dtype": "F16", "shape": shape, "data_offsets": [0, 0]}
        for name, shape in shapes.items()}
    if metadata is not None:
        header["__metadata__"] = metadata
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw)
    return path


def prefixed(keys: dict[str, list[int]]) -> dict[str, list[int]]:
    return {UNET + key: shape for key, shape in keys.items()}


def write_folder(path: Path, class_name: str, configs: dict[str, dict] | None = None,
                 **index: object) -> Path:
    """A diffusers folder's JSON files only: model_index.json and the given configs."""
    files = {"model_index.json": {"_class_name": class_name, "_diffusers_version": "0.42.0",
                                  **index},
             **(configs or {})}
    for rel, data in files.items():
        (path / rel).parent.mkdir(parents=True, exist_ok=True)
        (path / rel).write_text(json.dumps(data))
    return path


def refusal(call, path: Path) -> str:
    """The message of the ModelError that ``call(path)`` raises, checked to name the path
    and to be one line."""
    with pytest.raises(ModelError) as caught:
        call(path)
    message = str(caught.value)
    assert str(path) in message
    assert "\n" not in message
    return message


# --- single files: the families ----------------------------------------------------------

@pytest.mark.parametrize("keys, family, words", [
    (SD1, "sd1", "SD 1.x checkpoint"),
    (SDXL, "sdxl", "SDXL checkpoint"),
])
def test_an_original_layout_checkpoint_is_its_family_with_epsilon(tmp_path, keys, family, words):
    # Given a checkpoint with no v-prediction marker
    path = write_checkpoint(tmp_path / "m.safetensors", keys)
    # Then it is its family, epsilon
    assert detect_file(path) == Detection(family, "epsilon", words)


def test_an_sd2_checkpoint_is_told_by_its_1024_wide_cross_attention(tmp_path):
    path = write_checkpoint(tmp_path / "sd21.safetensors", SD2)
    found = detect_file(path)
    # 768-v and 512 have the same keys: without a marker, epsilon, and the words say so
    assert (found.family, found.prediction) == ("sd2", "epsilon")
    assert "epsilon assumed" in found.found


def test_an_sd2_768_v_checkpoint_is_v_by_its_modelspec_architecture(tmp_path):
    path = write_checkpoint(tmp_path / "sd21-768.safetensors", SD2,
                            metadata={"modelspec.architecture": "stable-diffusion-v2-768-v"})
    assert detect_file(path) == Detection(
        "sd2", "v", "SD 2.x checkpoint, v-prediction (modelspec.architecture)")


@pytest.mark.parametrize("marker", ["v_pred", "ztsnr"])
def test_an_sdxl_checkpoint_with_a_v_prediction_key_is_v(tmp_path, marker):
    # Given NoobAI-XL v-pred: SDXL's keys plus an empty marker tensor
    path = write_checkpoint(tmp_path / "noob.safetensors", {**SDXL, marker: [0]})
    # Then it is SDXL with v-prediction, and the words name the marker
    assert detect_file(path) == Detection(
        "sdxl", "v", f"SDXL checkpoint, v-prediction ({marker} key)")


@pytest.mark.parametrize("value, prediction, words", [
    ("v", "v", "v-prediction"),
    ("v_prediction", "v", "v-prediction"),
    ("v-prediction", "v", "v-prediction"),
    ("epsilon", "epsilon", "epsilon"),
])
def test_modelspec_prediction_type_sets_the_prediction(tmp_path, value, prediction, words):
    path = write_checkpoint(tmp_path / "m.safetensors", SDXL,
                            metadata={"modelspec.prediction_type": value})
    assert detect_file(path) == Detection(
        "sdxl", prediction, f"SDXL checkpoint, {words} (modelspec.prediction_type)")


def test_an_unknown_modelspec_prediction_type_is_refused_not_ignored(tmp_path):
    path = write_checkpoint(tmp_path / "m.safetensors", SDXL,
                            metadata={"modelspec.prediction_type": "sample"})
    assert "'sample'" in refusal(detect_file, path)


@pytest.mark.parametrize("prefix", [False, True], ids=["bare", "model.diffusion_model"])
@pytest.mark.parametrize("keys, family", [(FLUX_DEV, "flux-dev"), (FLUX_SCHNELL, "flux-schnell")])
def test_flux_dev_has_guidance_in_and_schnell_has_not(tmp_path, keys, family, prefix):
    path = write_checkpoint(tmp_path / "flux.safetensors", prefixed(keys) if prefix else keys)
    found = detect_file(path)
    assert (found.family, found.prediction) == (family, "flow")
    assert ("no guidance_in" in found.found) == (family == "flux-schnell")


@pytest.mark.parametrize("prefix", [False, True], ids=["bare", "model.diffusion_model"])
def test_an_sd3_checkpoint_is_sd3_with_flow(tmp_path, prefix):
    path = write_checkpoint(tmp_path / "sd3.safetensors", prefixed(SD3) if prefix else SD3)
    assert detect_file(path) == Detection("sd3", "flow", "SD3 Medium checkpoint")


def test_an_sd35_large_checkpoint_is_sd3(tmp_path):
    keys = {**SD3, "joint_blocks.37.x_block.mlp.fc1.weight": [9728, 2432]}
    path = write_checkpoint(tmp_path / "sd35l.safetensors", keys)
    assert detect_file(path) == Detection("sd3", "flow", "SD 3.5 Large checkpoint")


def test_a_v_marker_does_not_change_flow_models(tmp_path):
    path = write_checkpoint(tmp_path / "flux.safetensors", {**FLUX_DEV, "v_pred": [0]})
    assert detect_file(path).prediction == "flow"


# --- single files: refusals --------------------------------------------------------------

@pytest.mark.parametrize("name, keys, words", [
    ("refiner", SDXL_REFINER, "an SDXL refiner checkpoint is not supported"),
    ("sd15-inpainting", {**SD1, UNET + "input_blocks.0.0.weight": [320, 9, 3, 3]},
     "an SD 1.x inpainting checkpoint (9 input channels) is not supported"),
    ("sd2-inpainting", {**SD2, UNET + "input_blocks.0.0.weight": [320, 9, 3, 3]},
     "an SD 2.x inpainting checkpoint"),
    ("sdxl-inpainting", {**SDXL, UNET + "input_blocks.0.0.weight": [320, 9, 3, 3]},
     "an SDXL inpainting checkpoint"),
    ("playground", {**SDXL, "edm_mean": [1, 4, 1, 1], "edm_std": [1, 4, 1, 1]},
     "Playground v2.5"),
    ("upscaler", {**SD2, UNET + "input_blocks.10.0.skip_connection.bias": [512]}, "upscaler"),
    ("controlnet", {"control_model.time_embed.0.weight": [1280, 320]}, "ControlNet"),
    ("flux-fill", {**FLUX_DEV, "img_in.weight": [3072, 384]}, "Flux.1 Fill"),
    ("chroma", {**FLUX_SCHNELL, "distilled_guidance_layer.in_proj.bias": [5120]}, "Chroma"),
    ("sdxl-unet", {k: v for k, v in SDXL.items() if k.startswith(UNET)}, "SDXL UNet alone"),
])
def test_architectures_sdfarm_does_not_render_are_refused_by_name(tmp_path, name, keys, words):
    message = refusal(detect_file, write_checkpoint(tmp_path / f"{name}.safetensors", keys))
    assert words in message
    assert RENDERS in message


@pytest.mark.parametrize("keys", [
    ["lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight",
     "lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight",
     "lora_unet_down_blocks_0_attentions_0_proj_in.alpha"],
    ["unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora_A.weight",
     "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora_B.weight"],
    # A LoRA whose module names look like a checkpoint's must not pass as one
    [UNET + "output_blocks.11.0.skip_connection.lora_down.weight",
     "conditioner.embedders.1.model.transformer.resblocks.9.mlp.c_proj.lora_up.weight"],
], ids=["kohya", "peft", "ldm-names"])
def test_a_lora_file_is_refused_as_a_lora(tmp_path, keys):
    message = refusal(detect_file, write_checkpoint(tmp_path / "style.safetensors", keys))
    assert "this is a LoRA, not a checkpoint" in message


def test_a_vae_file_is_refused_as_a_vae(tmp_path):
    keys = ["encoder.conv_in.weight", "decoder.conv_out.weight", "quant_conv.weight",
            "post_quant_conv.weight"]
    message = refusal(detect_file, write_checkpoint(tmp_path / "vae.safetensors", keys))
    assert "this is a VAE, not a checkpoint" in message


def test_unknown_keys_are_refused_naming_the_prefixes_found(tmp_path):
    # Given keys of no known architecture (diffusers would call this "v1")
    keys = ["net.blocks.0.w", "net.blocks.1.w", "head.w", "extra"]
    message = refusal(detect_file, write_checkpoint(tmp_path / "odd.safetensors", keys))
    assert "unknown architecture" in message
    assert "'net.*'" in message and "'head.*'" in message and "'extra'" in message


def test_a_file_with_no_tensors_is_refused(tmp_path):
    assert "no tensors" in refusal(detect_file, write_checkpoint(tmp_path / "e.safetensors", []))


def test_a_pickle_or_text_file_is_refused_as_not_safetensors(tmp_path):
    path = tmp_path / "model.ckpt"
    path.write_bytes(b"PK\x03\x04 this is a zip of pickles, not a safetensors file")
    assert "not a safetensors file" in refusal(detect_file, path)


def test_a_missing_file_is_refused(tmp_path):
    refusal(detect_file, tmp_path / "absent.safetensors")


def test_detection_reads_no_tensor_data(tmp_path):
    # Given a header that promises 4 GB of tensors the file does not hold
    path = tmp_path / "big.safetensors"
    raw = json.dumps({key: {"dtype": "F16", "shape": shape, "data_offsets": [0, 4 << 30]}
                      for key, shape in SDXL.items()}).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw)
    # Then it is still classified
    assert detect_file(path).family == "sdxl"


# --- diffusers folders -------------------------------------------------------------------

@pytest.mark.parametrize("class_name, configs, family, prediction, words", [
    ("StableDiffusionPipeline", {"text_encoder/config.json": {"hidden_size": 768}},
     "sd1", "epsilon", "SD 1.x (diffusers folder, StableDiffusionPipeline)"),
    ("StableDiffusionXLPipeline", {}, "sdxl", "epsilon",
     "SDXL base (diffusers folder, StableDiffusionXLPipeline)"),
    ("StableDiffusionXLImg2ImgPipeline", {}, "sdxl", "epsilon",
     "SDXL base (diffusers folder, StableDiffusionXLImg2ImgPipeline)"),
    ("FluxPipeline", {"transformer/config.json": {"guidance_embeds": True}}, "flux-dev", "flow",
     "Flux.1-dev (diffusers folder, FluxPipeline, guidance_embeds)"),
    ("FluxPipeline", {"transformer/config.json": {"guidance_embeds": False}}, "flux-schnell",
     "flow", "Flux.1-schnell (diffusers folder, FluxPipeline, no guidance_embeds)"),
    ("StableDiffusion3Pipeline", {}, "sd3", "flow",
     "SD3 (diffusers folder, StableDiffusion3Pipeline)"),
])
def test_a_diffusers_folder_is_its_pipeline_class_family(tmp_path, class_name, configs, family,
                                                        prediction, words):
    path = write_folder(tmp_path / "model", class_name, configs,
                        text_encoder=["transformers", "CLIPTextModel"])
    assert detect_folder(path) == Detection(family, prediction, words)


@pytest.mark.parametrize("config", [
    {"text_encoder/config.json": {"hidden_size": 1024}},
    {"unet/config.json": {"cross_attention_dim": 1024, "in_channels": 4}},
], ids=["text-encoder-hidden-size", "unet-cross-attention-dim"])
def test_a_stable_diffusion_folder_with_a_1024_wide_encoder_is_sd2(tmp_path, config):
    path = write_folder(tmp_path / "sd21", "StableDiffusionPipeline", config)
    assert detect_folder(path).family == "sd2"


@pytest.mark.parametrize("class_name, family", [
    ("StableDiffusionPipeline", "sd2"), ("StableDiffusionXLPipeline", "sdxl")])
def test_a_v_prediction_scheduler_makes_a_folder_v(tmp_path, class_name, family):
    configs = {"scheduler/scheduler_config.json": {"prediction_type": "v_prediction"},
               "text_encoder/config.json": {"hidden_size": 1024}}
    path = write_folder(tmp_path / "m", class_name, configs,
                        text_encoder=["transformers", "CLIPTextModel"])
    found = detect_folder(path)
    assert (found.family, found.prediction) == (family, "v")
    assert found.found.endswith("v-prediction (scheduler prediction_type)")


def test_a_flux_folder_is_flow_whatever_its_scheduler_says(tmp_path):
    configs = {"transformer/config.json": {"guidance_embeds": True},
               "scheduler/scheduler_config.json": {"prediction_type": "v_prediction"}}
    assert detect_folder(write_folder(tmp_path / "f", "FluxPipeline", configs)).prediction == "flow"


def test_an_unknown_pipeline_class_is_refused_naming_it(tmp_path):
    path = write_folder(tmp_path / "kandinsky", "KandinskyPipeline")
    message = refusal(detect_folder, path)
    assert "a KandinskyPipeline folder is not supported" in message
    assert RENDERS in message


@pytest.mark.parametrize("name, class_name, configs, index, words", [
    ("refiner", "StableDiffusionXLImg2ImgPipeline", {},
     {"text_encoder": [None, None], "requires_aesthetics_score": True}, "SDXL refiner"),
    ("inpaint", "StableDiffusionPipeline", {"unet/config.json": {"in_channels": 9}}, {},
     "inpainting"),
    ("flux", "FluxPipeline", {}, {}, "transformer/config.json"),
    ("sample", "StableDiffusionPipeline",
     {"scheduler/scheduler_config.json": {"prediction_type": "sample"}}, {}, "'sample'"),
])
def test_folders_sdfarm_cannot_render_or_classify_are_refused(tmp_path, name, class_name, configs,
                                                              index, words):
    path = write_folder(tmp_path / name, class_name, configs, **index)
    assert words in refusal(detect_folder, path)


def test_a_folder_without_model_index_is_refused(tmp_path):
    assert "model_index.json" in refusal(detect_folder, tmp_path)


def test_a_folder_with_broken_json_is_refused(tmp_path):
    (tmp_path / "model_index.json").write_text("{not json")
    assert "not valid JSON" in refusal(detect_folder, tmp_path)


def test_a_missing_folder_or_a_file_is_refused(tmp_path):
    refusal(detect_folder, tmp_path / "absent")
    refusal(detect_folder, write_checkpoint(tmp_path / "m.safetensors", SD1))
