"""sdfarm's configs-only diffusers folders, which let a single-file checkpoint load offline
without model_config: the real architectures of SD 1.5, SD 2.x and SDXL base, chosen from the
file's header, written once, holding no weights."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch

from sdfarm.errors import ModelError
from sdfarm.worker.configs import config_name, single_file_config
from sdfarm.worker.original_layout import unet_tensors

pytestmark = pytest.mark.slow


def load_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def count(model) -> int:
    return sum(p.numel() for p in model.parameters())


def on_meta(folder: Path) -> dict[str, object]:
    """The pipeline components of a configs folder, built on the meta device (no weights)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    with torch.device("meta"):
        models = {
            "unet": UNet2DConditionModel.from_config(
                UNet2DConditionModel.load_config(folder / "unet")),
            "vae": AutoencoderKL.from_config(AutoencoderKL.load_config(folder / "vae")),
            "text_encoder": CLIPTextModel(CLIPTextConfig.from_pretrained(folder / "text_encoder")),
        }
        if (folder / "text_encoder_2").is_dir():
            models["text_encoder_2"] = CLIPTextModelWithProjection(
                CLIPTextConfig.from_pretrained(folder / "text_encoder_2"))
    return models


def header_shapes(unet) -> dict[str, tuple[int, ...]]:
    """The UNet shapes a single file of ``unet``'s architecture has in its header."""
    return {k: tuple(v.shape) for k, v in unet_tensors(unet.state_dict(), unet.config).items()}


# --- the real architectures ---------------------------------------------------------------

@pytest.mark.parametrize("family, prediction, name, counts", [
    ("sd1", "epsilon", "sd1-epsilon", {"unet": 859_520_964, "vae": 83_653_863,
                                       "text_encoder": 123_060_480}),
    ("sd2", "epsilon", "sd2-512-epsilon", {"unet": 865_910_724, "vae": 83_653_863,
                                           "text_encoder": 340_387_840}),
    ("sd2", "v", "sd2-768-v", {"unet": 865_910_724, "vae": 83_653_863,
                               "text_encoder": 340_387_840}),
    ("sdxl", "epsilon", "sdxl-epsilon", {"unet": 2_567_463_684, "vae": 83_653_863,
                                         "text_encoder": 123_060_480,
                                         "text_encoder_2": 694_659_840}),
])
def test_configs_have_the_parameter_counts_of_the_hub_models(
        tmp_path: Path, family: str, prediction: str, name: str, counts: dict[str, int]) -> None:
    # When the configs for a checkpoint whose header says nothing (a pickle) are written
    folder = single_file_config({}, family, prediction, tmp_path)

    # Then they are the real model's: runwayml/stable-diffusion-v1-5,
    # stabilityai/stable-diffusion-2-base and -2-1, stabilityai/stable-diffusion-xl-base-1.0
    assert folder.name == name
    models = on_meta(folder)
    assert {k: count(m) for k, m in models.items()} == counts
    # And a real checkpoint's header selects these same configs
    assert config_name(header_shapes(models["unet"]), family, prediction) == name


def test_configs_hold_no_weights_and_are_the_same_when_written_twice(tmp_path: Path) -> None:
    first = single_file_config({}, "sdxl", "epsilon", tmp_path / "a")
    second = single_file_config({}, "sdxl", "epsilon", tmp_path / "b")

    def digest(folder: Path) -> dict[str, str]:
        return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(folder.rglob("*")) if p.is_file()}

    assert digest(first) == digest(second)
    assert not [n for n in digest(first) if n.endswith((".safetensors", ".bin", ".ckpt"))]
    assert {p.name for p in first.iterdir()} == {
        "model_index.json", "unet", "vae", "text_encoder", "text_encoder_2", "tokenizer",
        "tokenizer_2", "scheduler"}
    # Written once: asking again gives the same folder without rewriting it
    stamp = (first / "model_index.json").stat().st_mtime_ns
    assert single_file_config({}, "sdxl", "epsilon", tmp_path / "a") == first
    assert (first / "model_index.json").stat().st_mtime_ns == stamp


def test_v_prediction_sdxl_configs_train_with_zero_terminal_snr(tmp_path: Path) -> None:
    # NoobAI-XL v-pred and the like: v-prediction, zero terminal SNR, trailing timesteps
    scheduler = load_json(single_file_config({}, "sdxl", "v", tmp_path)
                          / "scheduler" / "scheduler_config.json")

    assert scheduler["_class_name"] == "EulerDiscreteScheduler"
    assert scheduler["prediction_type"] == "v_prediction"
    assert scheduler["rescale_betas_zero_snr"] is True
    assert scheduler["timestep_spacing"] == "trailing"
    epsilon = load_json(single_file_config({}, "sdxl", "epsilon", tmp_path)
                        / "scheduler" / "scheduler_config.json")
    assert (epsilon["prediction_type"], epsilon["timestep_spacing"], epsilon["steps_offset"]) == (
        "epsilon", "leading", 1)
    assert "rescale_betas_zero_snr" not in epsilon


def test_sd_v_prediction_configs_predict_v(tmp_path: Path) -> None:
    for family in ("sd1", "sd2"):
        folder = single_file_config({}, family, "v", tmp_path)
        scheduler = load_json(folder / "scheduler" / "scheduler_config.json")
        assert scheduler["prediction_type"] == "v_prediction", family


# --- what has no configs ------------------------------------------------------------------

@pytest.mark.parametrize("family", ["flux-dev", "flux-schnell", "sd3"])
def test_flux_and_sd3_single_files_are_told_to_set_model_config(tmp_path: Path,
                                                               family: str) -> None:
    with pytest.raises(ModelError, match='set model_config = "path/to/a/diffusers/folder"') as info:
        single_file_config({}, family, "flow", tmp_path)
    assert "text encoder" in str(info.value) and "\n" not in str(info.value)
    assert not (tmp_path / "configs").exists()


def test_an_unknown_family_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="unknown model family 'sd4'"):
        single_file_config({}, "sd4", "epsilon", tmp_path)


def test_a_checkpoint_of_another_size_is_told_to_set_model_config(tmp_path: Path) -> None:
    # Given an SDXL-layout file whose UNet starts with 256 channels, which no config has
    shapes = {"model.diffusion_model.input_blocks.0.0.weight": (256, 4, 3, 3)}

    with pytest.raises(ModelError, match=r"\[256, 4, 3, 3\], SDXL's starts \[320, 4\]\): set "
                                         r'model_config = "path/to/a/diffusers/folder"'):
        config_name(shapes, "sdxl", "epsilon")
