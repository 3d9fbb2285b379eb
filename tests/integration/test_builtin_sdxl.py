"""builtin:tiny-sdxl and builtin:sdxl: SDXL's architecture from the real classes, built offline,
rendered on the CPU, and written as an original single file that loads offline with sdfarm's
own configs and renders the same pixels."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

from sdfarm.checkpoints import read_header
from sdfarm.config import Settings
from sdfarm.modeldetect import detect_file
from sdfarm.modelref import parse_model_ref
from sdfarm.spec import RenderSpec
from sdfarm.worker.builtin import ensure_builtin
from sdfarm.worker.builtin_sdxl import sdxl_configs
from sdfarm.worker.configs import config_name
from sdfarm.worker.models import load_pipeline
from sdfarm.worker.original_layout import write_original_sdxl
from sdfarm.worker.render import DiffusersRenderer

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]

SPEC = RenderSpec(model="builtin:tiny-sdxl", prompt="a photo of a cat", negative_prompt="blurry",
                  seed=3, steps=4, width=64, height=64, family="sdxl", prediction="epsilon")


@pytest.fixture(scope="module")
def sdxl_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model_dir = tmp_path_factory.mktemp("sdxl-models")
    ensure_builtin("tiny-sdxl", model_dir)
    return model_dir


@pytest.fixture(scope="module")
def renderer(sdxl_dir: Path) -> DiffusersRenderer:
    return DiffusersRenderer(Settings(database_url="sqlite://", model_dir=sdxl_dir, device="cpu",
                                      threads=1))


@pytest.fixture(scope="module")
def single_file(sdxl_dir: Path) -> Path:
    """builtin:tiny-sdxl as one original-layout .safetensors, as Civitai distributes SDXL."""
    return write_original_sdxl(sdxl_dir / "builtin-tiny-sdxl", sdxl_dir / "tiny-sdxl.safetensors")


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants

    # huggingface_hub reads the variable at import, so set what it already read too.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


def render(renderer: DiffusersRenderer, spec: RenderSpec) -> np.ndarray:
    [image] = renderer.render([spec], model_config=None, allow_pickle=False, on_step=lambda: None)
    return np.asarray(image, dtype=int)


def files_digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def megabytes(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e6


# --- builtin:tiny-sdxl --------------------------------------------------------------------

def test_tiny_sdxl_builds_bit_identically_in_two_fresh_model_dirs(sdxl_dir: Path,
                                                                  tmp_path: Path) -> None:
    # When tiny-sdxl is built again in another model dir
    again = ensure_builtin("tiny-sdxl", tmp_path / "models")

    # Then every file is byte for byte the same, and the whole model is a few MB
    first = sdxl_dir / "builtin-tiny-sdxl"
    assert files_digest(again) == files_digest(first)
    assert not list(first.rglob("*.bin"))
    assert megabytes(first) < 35  # weights ~11 MB; the two real CLIP tokenizers ~20 MB


def test_tiny_sdxl_loads_as_sdxl_base_with_real_tokenizers(sdxl_dir: Path) -> None:
    pipe = load_pipeline(parse_model_ref("builtin:tiny-sdxl", sdxl_dir), sdxl_dir, device="cpu",
                         dtype=torch.float32, family="sdxl", prediction="epsilon")

    assert type(pipe).__name__ == "StableDiffusionXLPipeline"
    assert pipe.unet.config.addition_embed_type == "text_time"
    assert pipe.unet.config.cross_attention_dim == (pipe.text_encoder.config.hidden_size
                                                    + pipe.text_encoder_2.config.hidden_size)
    assert pipe.text_encoder_2.config.num_hidden_layers >= 10
    # The real CLIP tokenizer for both encoders; the second pads with "!" as SDXL's does
    for tokenizer in (pipe.tokenizer, pipe.tokenizer_2):
        assert len(tokenizer) == 49408
        assert tokenizer("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert pipe.tokenizer.pad_token == "<|endoftext|>" and pipe.tokenizer_2.pad_token == "!"
    assert pipe.vae.config.scaling_factor == 0.13025 and pipe.vae.config.force_upcast
    scheduler = pipe.scheduler.config
    assert (type(pipe.scheduler).__name__, scheduler.timestep_spacing, scheduler.steps_offset,
            scheduler.beta_schedule) == ("EulerDiscreteScheduler", "leading", 1, "scaled_linear")
    assert pipe.watermark is None


def test_tiny_sdxl_renders_64x64_deterministically(renderer: DiffusersRenderer) -> None:
    first = render(renderer, SPEC)
    again = render(renderer, SPEC)
    other_seed = render(renderer, SPEC.replace(seed=4))

    assert first.shape == (64, 64, 3) and first.std() > 0
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other_seed)


# --- builtin:sdxl -------------------------------------------------------------------------

def test_sdxl_has_the_parameter_counts_of_sdxl_base() -> None:
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    configs = sdxl_configs("sdxl")
    with torch.device("meta"):  # no memory, no time: never build the 7 GB model here
        unet = UNet2DConditionModel(**configs.unet)
        vae = AutoencoderKL(**configs.vae)
        text_encoder = CLIPTextModel(CLIPTextConfig(**configs.text_encoder))
        text_encoder_2 = CLIPTextModelWithProjection(CLIPTextConfig(**configs.text_encoder_2))

    def count(model) -> int:
        return sum(p.numel() for p in model.parameters())

    # stabilityai/stable-diffusion-xl-base-1.0's components
    assert count(unet) == 2_567_463_684
    assert count(vae) == 83_653_863
    assert count(text_encoder) == 123_060_480  # CLIP ViT-L/14
    assert count(text_encoder_2) == 694_659_840  # OpenCLIP ViT-bigG/14 with its projection
    assert configs.vae["force_upcast"] and configs.save_dtype == "float16"


# --- as an original single file -----------------------------------------------------------

def test_single_file_of_tiny_sdxl_is_detected_as_sdxl_with_tiny_configs(single_file: Path) -> None:
    detection = detect_file(single_file)

    assert (detection.family, detection.prediction) == ("sdxl", "epsilon")
    # Its header's shapes tell it from the real SDXL, whose configs would not fit it
    assert config_name(read_header(single_file).shapes, "sdxl", "epsilon") == "tiny-sdxl-epsilon"


def test_single_file_without_model_config_loads_offline_and_renders_the_folders_pixels(
        renderer: DiffusersRenderer, single_file: Path, sdxl_dir: Path, offline: None) -> None:
    # Given tiny-sdxl's pixels from its diffusers folder
    expected = render(renderer, SPEC)

    # When the same model, as one original-layout file with no model_config, renders the same spec
    pixels = render(renderer, SPEC.replace(model=str(single_file)))

    # Then the pixels are identical, and sdfarm's configs for it hold no weights
    assert np.array_equal(pixels, expected)
    configs = sdxl_dir / "configs" / "v1" / "tiny-sdxl-epsilon"
    assert (configs / "model_index.json").is_file()
    assert not [p for p in configs.rglob("*") if p.suffix in (".safetensors", ".bin")]


def test_v_prediction_single_file_loads_with_a_zero_terminal_snr_scheduler(
        sdxl_dir: Path, tmp_path: Path, offline: None) -> None:
    # Given tiny-sdxl as a single file marked v-prediction, as NoobAI-XL v-pred is
    marked = write_original_sdxl(sdxl_dir / "builtin-tiny-sdxl", tmp_path / "vpred.safetensors",
                                 metadata={"modelspec.prediction_type": "v"})
    detection = detect_file(marked)
    assert detection.prediction == "v"

    # When it is loaded, offline and without model_config, as what was detected
    pipe = load_pipeline(parse_model_ref(str(marked), sdxl_dir), sdxl_dir, device="cpu",
                         dtype=torch.float32, family=detection.family,
                         prediction=detection.prediction)

    # Then its scheduler predicts v with zero terminal SNR
    config = pipe.scheduler.config
    assert (config.prediction_type, config.rescale_betas_zero_snr, config.timestep_spacing) == (
        "v_prediction", True, "trailing")
