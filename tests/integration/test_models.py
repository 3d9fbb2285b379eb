"""Built-in models and loading pipelines: every kind of model reference, on the CPU, offline."""

from __future__ import annotations

import hashlib
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from sdfarm.errors import ModelError
from sdfarm.modelref import model_hash, parse_model_ref, sha256_file, weights_file
from sdfarm.worker.builtin import builtin_configs, ensure_builtin
from sdfarm.worker.models import load_pipeline

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]

WEIGHTS = ("unet/diffusion_pytorch_model.safetensors", "vae/diffusion_pytorch_model.safetensors",
           "text_encoder/model.safetensors")


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model_dir = tmp_path_factory.mktemp("models")
    ensure_builtin("tiny", model_dir)
    return model_dir


@pytest.fixture(scope="session")
def tiny(model_dir: Path):
    return load_pipeline(parse_model_ref("builtin:tiny", model_dir), model_dir,
                         device="cpu", dtype=torch.float32)


def render(pipe, prompt: str = "a photo of a cat, highly detailed", seed: int = 1, steps: int = 4):
    generator = torch.Generator("cpu").manual_seed(seed)
    image = pipe(prompt, num_inference_steps=steps, height=64, width=64, generator=generator).images[0]
    return np.asarray(image)


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants

    # huggingface_hub reads the variable at import, so set what it already read too.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


# --- builtin:tiny -------------------------------------------------------------------------

def test_tiny_is_a_diffusers_folder_of_a_few_megabytes(model_dir: Path) -> None:
    folder = model_dir / "builtin-tiny"

    size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())

    assert (folder / "model_index.json").is_file()
    assert 1_000_000 < size < 10_000_000
    assert not list(model_dir.glob(".builtin-tiny-tmp*"))


def test_tiny_is_built_once_then_reused(model_dir: Path) -> None:
    index = model_dir / "builtin-tiny" / "model_index.json"
    before = index.stat().st_mtime_ns

    assert ensure_builtin("tiny", model_dir) == model_dir / "builtin-tiny"
    assert index.stat().st_mtime_ns == before


def test_tiny_builds_bit_identically(model_dir: Path, tmp_path: Path) -> None:
    # When tiny is built again elsewhere
    again = ensure_builtin("tiny", tmp_path)

    # Then every weight file is byte for byte the same, so its hash is the same everywhere
    for name in WEIGHTS:
        assert sha256_file(again / name) == sha256_file(model_dir / "builtin-tiny" / name), name


def test_workers_starting_together_build_it_once(tmp_path: Path) -> None:
    # Given a half-built folder and a temporary folder left by a killed build
    (tmp_path / "builtin-tiny").mkdir()
    (tmp_path / ".builtin-tiny-tmpdead").mkdir()
    results: list[Path | BaseException] = []

    def worker() -> None:
        try:
            results.append(ensure_builtin("tiny", tmp_path))
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            results.append(exc)

    # When two workers ask for it at once
    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # Then both get the one folder (a second build could not have been renamed over the first)
    assert results == [tmp_path / "builtin-tiny"] * 2
    assert (tmp_path / "builtin-tiny" / "model_index.json").is_file()
    assert not list(tmp_path.glob(".builtin-tiny-tmp*"))


def test_unknown_builtin_cannot_be_built(tmp_path: Path) -> None:
    # (Not "sdxl": that is a built-in now, and building it writes 7 GB.)
    with pytest.raises(ModelError, match="builtin:tiny, builtin:sd15"):
        ensure_builtin("sd4", tmp_path)
    assert not (tmp_path / "builtin-sd4").exists()


def test_tiny_has_the_shape_of_sd15(tiny) -> None:
    assert tiny.vae_scale_factor == 8
    assert tiny.unet.config.sample_size * tiny.vae_scale_factor == 64
    assert tiny.unet.config.in_channels == tiny.vae.config.latent_channels == 4
    assert tiny.unet.config.cross_attention_dim == tiny.text_encoder.config.hidden_size
    assert tiny.tokenizer.model_max_length == 77
    assert type(tiny.scheduler).__name__ == "PNDMScheduler"
    assert tiny.scheduler.config.clip_sample is False
    assert tiny.safety_checker is None


def test_tiny_tokenizer_is_byte_level_bpe_with_common_prompt_words_whole(tiny) -> None:
    tokens = tiny.tokenizer.tokenize("masterpiece, highly detailed portrait")
    assert tokens == ["masterpiece</w>", ",</w>", "highly</w>", "detailed</w>", "portrait</w>"]

    # Any text tokenizes, without unknown tokens, as CLIP's byte-level BPE does
    ids = tiny.tokenizer("Zürich 🌸 café").input_ids
    assert ids[0] == tiny.tokenizer.bos_token_id and ids[-1] == tiny.tokenizer.eos_token_id
    assert tiny.tokenizer.unk_token_id not in ids[1:-1]


def test_every_clip_skip_gives_different_embeddings(tiny) -> None:
    ids = tiny.tokenizer("a cat", return_tensors="pt").input_ids
    with torch.no_grad():
        hidden = tiny.text_encoder(ids, output_hidden_states=True).hidden_states

    # CLIP skip 1 (the last layer) to 4 each read a different layer
    layers = [hidden[-skip - 1] for skip in range(0, 4)]
    for a, b in zip(layers, layers[1:]):
        assert not torch.allclose(a, b)


def test_tiny_renders_a_64x64_image_on_the_cpu_that_is_not_a_flat_fill(tiny) -> None:
    # How fast it renders is measured in bench/, not asserted here.
    pixels = render(tiny, steps=4)

    assert pixels.shape == (64, 64, 3)
    assert pixels.std() > 1  # an image, not a flat fill


def test_seed_determines_the_pixels(tiny) -> None:
    seven = render(tiny, seed=7)

    assert np.array_equal(render(tiny, seed=7), seven)
    assert not np.array_equal(render(tiny, seed=8), seven)


def test_builtin_hash_is_the_short_sha256_of_its_unet_weights(model_dir: Path) -> None:
    mref = parse_model_ref("builtin:tiny", model_dir)
    unet = model_dir / "builtin-tiny" / "unet" / "diffusion_pytorch_model.safetensors"

    assert weights_file(mref) == unet
    assert model_hash(mref, model_dir) == hashlib.sha256(unet.read_bytes()).hexdigest()[:10]


# --- user models --------------------------------------------------------------------------

def test_diffusers_folder_loads_like_the_builtin(model_dir: Path, tiny) -> None:
    folder = model_dir / "builtin-tiny"

    pipe = load_pipeline(parse_model_ref(str(folder), model_dir), model_dir, device="cpu",
                         dtype=torch.float32)

    assert np.array_equal(render(pipe), render(tiny))


def test_single_file_with_model_config_loads_offline(model_dir: Path, tiny, tmp_path: Path,
                                                     offline: None) -> None:
    # Given tiny's weights as one original-SD-layout .safetensors, as Civitai distributes them
    from safetensors.torch import save_file

    checkpoint = tmp_path / "tiny-merge.safetensors"
    save_file(to_original_sd_checkpoint(tiny), checkpoint)
    # and tiny's diffusers folder without its weights
    configs = tmp_path / "tiny-configs"
    shutil.copytree(model_dir / "builtin-tiny", configs, ignore=shutil.ignore_patterns("*.safetensors"))

    # When the file is loaded with that folder as its model_config
    mref = parse_model_ref(str(checkpoint), model_dir, model_config=str(configs))
    pipe = load_pipeline(mref, model_dir, device="cpu", dtype=torch.float32)

    # Then it is the same model: same pixels, and its hash is the file's
    assert np.array_equal(render(pipe), render(tiny))
    assert model_hash(mref, model_dir) == hashlib.sha256(checkpoint.read_bytes()).hexdigest()[:10]


def test_single_file_without_model_config_offline_says_to_set_model_config(
        model_dir: Path, tiny, tmp_path: Path, offline: None) -> None:
    from safetensors.torch import save_file

    checkpoint = tmp_path / "model.safetensors"
    save_file(to_original_sd_checkpoint(tiny), checkpoint)

    with pytest.raises(ModelError, match='model_config = "path/to/a/diffusers/folder"'):
        load_pipeline(parse_model_ref(str(checkpoint), model_dir), model_dir, device="cpu",
                      dtype=torch.float32)


def test_hub_model_not_in_the_cache_cannot_be_loaded_offline(model_dir: Path, offline: None) -> None:
    mref = parse_model_ref("sdfarm-tests/not-a-cached-model", model_dir)

    with pytest.raises(ModelError) as info:
        load_pipeline(mref, model_dir, device="cpu", dtype=torch.float32)

    message = str(info.value)
    assert "'sdfarm-tests/not-a-cached-model' is not in the Hugging Face cache" in message
    assert "HF_HUB_OFFLINE" in message
    assert "huggingface-cli download sdfarm-tests/not-a-cached-model" in message


def test_broken_folder_names_the_model_and_the_cause(model_dir: Path, tmp_path: Path) -> None:
    # Given a diffusers folder whose UNet weights are truncated
    broken = tmp_path / "broken"
    shutil.copytree(model_dir / "builtin-tiny", broken)
    unet = broken / "unet" / "diffusion_pytorch_model.safetensors"
    unet.write_bytes(unet.read_bytes()[:1000])

    with pytest.raises(ModelError, match=f"cannot load model '{broken}'") as info:
        load_pipeline(parse_model_ref(str(broken), model_dir), model_dir, device="cpu",
                      dtype=torch.float32)
    assert "\n" not in str(info.value)


# --- builtin:sd15 -------------------------------------------------------------------------

def test_sd15_has_the_parameter_counts_of_stable_diffusion_1_5() -> None:
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    configs = builtin_configs("sd15")
    with init_empty_weights():  # meta device: no memory, no time
        unet = UNet2DConditionModel(**configs.unet)
        vae = AutoencoderKL(**configs.vae)
        text_encoder = CLIPTextModel(CLIPTextConfig(**configs.text_encoder))

    def count(model) -> int:
        return sum(p.numel() for p in model.parameters())

    assert 800_000_000 < count(unet) < 900_000_000
    assert count(unet) == 859_520_964  # runwayml/stable-diffusion-v1-5's UNet
    assert count(vae) == 83_653_863
    assert count(text_encoder) == 123_060_480
    assert configs.save_dtype == "float16"


# --- a diffusers pipeline as an original SD checkpoint (test helper) -----------------------

def to_original_sd_checkpoint(pipe) -> dict[str, torch.Tensor]:
    """The state dict of ``pipe`` in the original CompVis layout of SD 1.x single files.

    The inverse of diffusers' ``convert_ldm_*_checkpoint`` for UNet2DConditionModel,
    AutoencoderKL and CLIPTextModel, for any number of blocks and layers per block.
    """
    out: dict[str, torch.Tensor] = {}
    layers = pipe.unet.config.layers_per_block
    for key, value in pipe.unet.state_dict().items():
        out["model.diffusion_model." + _unet_key(key, layers, pipe.unet)] = value
    n_up = len(pipe.vae.config.up_block_types)
    for key, value in pipe.vae.state_dict().items():
        new = _vae_key(key, n_up)
        if ".mid.attn_1." in new and value.ndim == 2:
            value = value[:, :, None, None]  # the original VAE attention uses 1x1 convolutions
        out["first_stage_model." + new] = value
    for key, value in pipe.text_encoder.state_dict().items():
        prefix = "" if key.startswith("text_model.") else "text_model."
        out["cond_stage_model.transformer." + prefix + key] = value
    return {k: v.contiguous() for k, v in out.items()}


_UNET_TOP = {
    "time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2",
    "conv_in": "input_blocks.0.0", "conv_norm_out": "out.0", "conv_out": "out.2",
}
_UNET_RESNET = {"norm1": "in_layers.0", "conv1": "in_layers.2", "norm2": "out_layers.0",
                "conv2": "out_layers.3", "time_emb_proj": "emb_layers.1",
                "conv_shortcut": "skip_connection"}
_VAE_ATTENTION = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v",
                  "to_out.0": "proj_out"}


def _resnet(rest: str) -> str:
    head, _, tail = rest.partition(".")
    return f"{_UNET_RESNET.get(head, head)}.{tail}"


def _layer(index: int, kind: str, rest: str) -> str:
    # In the original UNet a level is a list of [resnet, attention?, resampler?] groups.
    return f"{index}.0.{_resnet(rest)}" if kind == "resnets" else f"{index}.1.{rest}"


def _unet_key(key: str, layers: int, unet) -> str:
    parts = key.split(".")
    if parts[0] == "down_blocks":
        block, kind = int(parts[1]), parts[2]
        if kind == "downsamplers":
            return f"input_blocks.{(layers + 1) * (block + 1)}.0.op.{parts[-1]}"
        index = (layers + 1) * block + int(parts[3]) + 1
        return "input_blocks." + _layer(index, kind, ".".join(parts[4:]))
    if parts[0] == "up_blocks":
        block, kind = int(parts[1]), parts[2]
        if kind == "upsamplers":
            slot = 2 if hasattr(unet.up_blocks[block], "attentions") else 1
            return f"output_blocks.{(layers + 1) * block + layers}.{slot}.conv.{parts[-1]}"
        index = (layers + 1) * block + int(parts[3])
        return "output_blocks." + _layer(index, kind, ".".join(parts[4:]))
    if parts[0] == "mid_block":  # resnet, attention, resnet
        rest = ".".join(parts[3:])
        if parts[1] == "resnets":
            return f"middle_block.{2 * int(parts[2])}.{_resnet(rest)}"
        return f"middle_block.1.{rest}"
    return f"{_UNET_TOP['.'.join(parts[:-1])]}.{parts[-1]}"


def _vae_key(key: str, n_up: int) -> str:
    parts = key.split(".")
    side = parts[0]  # encoder, decoder, or a top-level conv
    if len(parts) > 2 and parts[1] in ("down_blocks", "up_blocks"):
        down = parts[1] == "down_blocks"
        index = int(parts[2]) if down else n_up - 1 - int(parts[2])  # numbered from the bottom
        level = f"{side}.{'down' if down else 'up'}.{index}"
        if parts[3] in ("downsamplers", "upsamplers"):
            return f"{level}.{'downsample' if down else 'upsample'}.conv.{parts[-1]}"
        rest = ".".join(parts[5:]).replace("conv_shortcut", "nin_shortcut")
        return f"{level}.block.{parts[4]}.{rest}"
    if len(parts) > 2 and parts[1] == "mid_block":
        if parts[2] == "resnets":
            rest = ".".join(parts[4:]).replace("conv_shortcut", "nin_shortcut")
            return f"{side}.mid.block_{int(parts[3]) + 1}.{rest}"
        return f"{side}.mid.attn_1.{_VAE_ATTENTION['.'.join(parts[4:-1])]}.{parts[-1]}"
    return key.replace("conv_norm_out", "norm_out")


def test_a_pickle_the_restricted_unpickler_refuses_says_it_was_refused_as_a_pickle(
        model_dir: Path, tmp_path: Path) -> None:
    """allow_pickle = true still loads only tensors: a Lightning-style checkpoint that also
    pickles other objects is refused, and the message says so, not "needs a config"."""
    import argparse

    checkpoint = tmp_path / "lightning.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(2)}, "hparams": argparse.Namespace(lr=1)},
               checkpoint)
    mref = parse_model_ref(str(checkpoint), model_dir, allow_pickle=True)

    with pytest.raises(ModelError) as info:
        load_pipeline(mref, model_dir, device="cpu", dtype=torch.float32, family="sd1")
    message = str(info.value)
    assert message.startswith(f"pickle checkpoint '{checkpoint}' was refused")
    assert "argparse.Namespace" in message and "Convert it to .safetensors" in message
    assert "model_config" not in message and "\n" not in message
