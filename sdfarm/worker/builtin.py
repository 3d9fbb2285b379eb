"""Built-in random-weight models, built offline and deterministically on first use.

``builtin:tiny`` lets tests and demos render real pipelines on a CPU in milliseconds;
``builtin:sd15`` has SD 1.5's exact architecture, so a GPU benchmark does the real model's work
on a machine that has no weights and no internet. Both are assembled from the real diffusers
and transformers classes and saved with ``save_pretrained``, so they load through the same
code as a user's model.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator

from sdfarm.errors import ModelError
from sdfarm.modelref import BUILTIN_MODELS
from sdfarm.worker.buildonce import build_once
from sdfarm.worker.clip_vocab import bytes_to_unicode

#: Fixed seeds, one per component, so two builds are bit-identical and changing one
#: component's config leaves the others' weights as they were.
SEEDS = {"unet": 0, "vae": 1, "text_encoder": 2, "text_encoder_2": 3, "text_encoder_3": 4,
         "transformer": 5}

#: The SD 1.5 scheduler (runwayml/stable-diffusion-v1-5, scheduler/scheduler_config.json).
SD15_SCHEDULER: dict[str, Any] = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "steps_offset": 1,
    "skip_prk_steps": True,
    "set_alpha_to_one": False,
    "clip_sample": False,
}

#: CLIP's context length; prompts are cut or padded to it, as in SD.
MAX_TOKENS = 77

#: Words the built-in tokenizer learns its merges from (~700 merges): common SD prompt words
#: become one token each, as with the real CLIP tokenizer, and other words a few pieces.
PROMPT_WORDS = """
a an the of in on at with and by from for to is as photo photograph portrait painting
drawing sketch illustration render art artwork digital concept oil watercolor pencil
charcoal ink anime manga cartoon comic realistic photorealistic hyperrealistic
cinematic dramatic soft hard studio natural golden hour sunset sunrise night day light
lighting shadow shadows volumetric fog mist rain snow storm cloud clouds sky blue red
green yellow orange purple pink black white gray grey brown gold silver colorful vibrant
pastel dark bright warm cold highly detailed detail intricate sharp focus masterpiece
best quality high resolution ultra hd wallpaper trending artstation octane unreal
engine sharp blurry bokeh depth field wide angle lens mm close up full body face eyes
hair smile woman man girl boy child old young person people knight wizard warrior
princess king queen robot cyborg astronaut dragon cat dog horse bird fox wolf lion
tiger owl fish forest mountain mountains river lake ocean sea beach island desert city
street castle village house room interior landscape garden flower flowers tree trees
field valley waterfall space planet moon star stars galaxy nebula futuristic
cyberpunk steampunk fantasy medieval ancient modern retro vintage minimalist
surreal abstract epic beautiful cute scary horror magical mystical glowing neon
reflection water fire smoke ice stone wood metal glass crystal armor dress suit hat
sword book candle window door road car train ship boat airplane by greg rutkowski
alphonse mucha artgerm studio ghibli trending style painted smooth elegant centered
symmetrical composition award winning professional ugly deformed bad anatomy extra
limbs missing fingers hands worst low lowres jpeg artifacts watermark text signature
cropped out frame duplicate mutated disfigured poorly drawn
"""


@dataclass(frozen=True)
class BuiltinConfigs:
    """The component configs of one built-in model (``from_config`` / ``CLIPTextConfig`` kwargs)."""

    unet: dict[str, Any]
    vae: dict[str, Any]
    text_encoder: dict[str, Any]
    scheduler: dict[str, Any]
    #: float16 keeps sd15 at ~2 GB on disk; tiny stays float32 so CPU tests need no casting.
    save_dtype: str


def builtin_configs(name: str) -> BuiltinConfigs:
    """The configs ``ensure_builtin`` builds ``name`` from (also usable on the meta device)."""
    vocab, _ = clip_vocab_and_merges()
    special = {"bos_token_id": vocab["<|startoftext|>"], "eos_token_id": vocab["<|endoftext|>"],
               "pad_token_id": vocab["<|endoftext|>"]}
    if name == "tiny":
        return BuiltinConfigs(
            # sample_size 8 with the x8 VAE: 64x64 images by default; attention_head_dim is
            # diffusers' name for the number of heads, as in SD.
            unet=_unet(8, (32, 64), layers=1, cross_attention_dim=32, heads=2, groups=8),
            # Four blocks, three downsamplings: the x8 scale factor of SD's VAE.
            vae=_vae((8, 16, 16, 16), layers=1, groups=4, sample_size=64),
            text_encoder=_text_encoder(len(vocab), hidden=32, intermediate=64,
                                       layers=5,  # CLIP skip 1..4 each drop a real layer
                                       heads=4, **special),
            scheduler=dict(SD15_SCHEDULER),
            save_dtype="float32",
        )
    if name == "sd15":
        return BuiltinConfigs(
            unet=_unet(64, (320, 640, 1280, 1280), layers=2, cross_attention_dim=768, heads=8,
                       groups=32),
            vae=_vae((128, 256, 512, 512), layers=2, groups=32, sample_size=512),
            # The real vocabulary size, so the text encoder has the real size and memory; the
            # built-in tokenizer uses only the first rows.
            text_encoder=_text_encoder(49408, hidden=768, intermediate=3072, layers=12, heads=12,
                                       **special),
            scheduler=dict(SD15_SCHEDULER),
            save_dtype="float16",
        )
    raise _unknown(name)


def _unet(sample_size: int, channels: tuple[int, ...], *, layers: int, cross_attention_dim: int,
          heads: int, groups: int) -> dict[str, Any]:
    """SD 1.x's UNet layout: cross-attention in every block but the deepest."""
    plain = len(channels) - 1
    return {
        "sample_size": sample_size,
        "in_channels": 4,
        "out_channels": 4,
        "block_out_channels": channels,
        "layers_per_block": layers,
        "down_block_types": ("CrossAttnDownBlock2D",) * plain + ("DownBlock2D",),
        "up_block_types": ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * plain,
        "cross_attention_dim": cross_attention_dim,
        "attention_head_dim": heads,
        "norm_num_groups": groups,
    }


def _vae(channels: tuple[int, ...], *, layers: int, groups: int, sample_size: int) -> dict[str, Any]:
    return {
        "in_channels": 3,
        "out_channels": 3,
        "latent_channels": 4,
        "block_out_channels": channels,
        "down_block_types": ("DownEncoderBlock2D",) * len(channels),
        "up_block_types": ("UpDecoderBlock2D",) * len(channels),
        "layers_per_block": layers,
        "norm_num_groups": groups,
        "sample_size": sample_size,
        "scaling_factor": 0.18215,
    }


def _text_encoder(vocab_size: int, *, hidden: int, intermediate: int, layers: int, heads: int,
                  **special: int) -> dict[str, Any]:
    return {
        "vocab_size": vocab_size,
        "hidden_size": hidden,
        "intermediate_size": intermediate,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "max_position_embeddings": MAX_TOKENS,
        "hidden_act": "quick_gelu",
        "projection_dim": hidden,
        **special,
    }


def ensure_builtin(name: str, model_dir: Path) -> Path:
    """The folder of built-in model ``name``, building it first if it is not there.

    Several workers starting together build it once: the build holds a lock in ``model_dir``,
    happens in a temporary folder beside the destination and is renamed into place whole.
    """
    if name not in BUILTIN_MODELS:
        raise _unknown(name)
    dest = model_dir / f"builtin-{name}"
    try:
        return build_once(dest, lambda folder: _build(name, folder))
    except OSError as exc:
        raise ModelError(f"cannot build builtin:{name} in {str(model_dir)!r}: {exc}") from exc


def _unknown(name: str) -> ModelError:
    known = ", ".join(f"builtin:{n}" for n in BUILTIN_MODELS)
    return ModelError(f"unknown built-in model 'builtin:{name}'; the built-in models are {known}")


#: ``module:function`` that builds each built-in model into a folder: ``build(name, folder)``.
#: Imported only when that model is built, so the others' code stays out of a worker.
BUILDERS: dict[str, str] = {
    "tiny": "sdfarm.worker.builtin:build_sd1",
    "sd15": "sdfarm.worker.builtin:build_sd1",
    "tiny-sd2v": "sdfarm.worker.builtin_sd2:build",
    "tiny-sdxl": "sdfarm.worker.builtin_sdxl:build",
    "sdxl": "sdfarm.worker.builtin_sdxl:build",
    "tiny-flux": "sdfarm.worker.builtin_flow:build",
    "tiny-sd3": "sdfarm.worker.builtin_flow:build",
}


def _build(name: str, folder: Path) -> None:
    import importlib

    module, function = BUILDERS[name].split(":")
    build = getattr(importlib.import_module(module), function)
    with quiet_libraries():
        import torch

        with torch.random.fork_rng(devices=[]):  # leave the worker's global RNG as it was
            build(name, folder)


def seeded(component: str) -> None:
    """Seed torch for building ``component`` (a key of :data:`SEEDS`), so that each component's
    weights depend on its own config only."""
    import torch

    torch.manual_seed(SEEDS[component])


def build_sd1(name: str, folder: Path) -> None:
    import torch
    from diffusers import (
        AutoencoderKL,
        PNDMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel

    configs = builtin_configs(name)
    seeded("unet")
    unet = UNet2DConditionModel(**configs.unet)
    seeded("vae")
    vae = AutoencoderKL(**configs.vae)
    seeded("text_encoder")
    text_encoder = CLIPTextModel(CLIPTextConfig(**configs.text_encoder))
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=clip_tokenizer(),
        unet=unet,
        # from_config keeps clip_sample = False (not a PNDM argument) in the saved config,
        # as SD 1.5 does, so a DDIM scheduler made from it does not clip.
        scheduler=PNDMScheduler.from_config(configs.scheduler),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.to(dtype=getattr(torch, configs.save_dtype))
    pipe.save_pretrained(folder, safe_serialization=True)
    _write_slow_tokenizer_files(folder / "tokenizer")


def _write_slow_tokenizer_files(folder: Path) -> None:
    # transformers 5 saves only tokenizer.json; transformers 4 loads CLIPTokenizer from these.
    vocab, merges = clip_vocab_and_merges()
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")


@contextlib.contextmanager
def quiet_libraries() -> Iterator[None]:
    """Keep transformers' and diffusers' warnings and progress bars out of a worker's output.

    Must wrap the first import of diffusers' pipelines too: transformers warns at import time
    about image processors that want torchvision, which SD text-to-image never uses.
    """
    import diffusers.utils.logging as dlog
    import transformers.utils.logging as tlog

    saved = (tlog.get_verbosity(), dlog.get_verbosity(),
             tlog.is_progress_bar_enabled(), dlog.is_progress_bar_enabled())
    tlog.set_verbosity_error()
    dlog.set_verbosity_error()
    tlog.disable_progress_bar()
    dlog.disable_progress_bar()
    try:
        yield
    finally:
        tlog.set_verbosity(saved[0])
        dlog.set_verbosity(saved[1])
        if saved[2]:
            tlog.enable_progress_bar()
        if saved[3]:
            dlog.enable_progress_bar()


def clip_tokenizer() -> Any:
    """A CLIP tokenizer (byte-level BPE, CLIP's pre-tokenizer) with a small generated vocabulary."""
    from transformers import CLIPTokenizer

    vocab, merges = clip_vocab_and_merges()
    return CLIPTokenizer(vocab=dict(vocab), merges=[tuple(m.split(" ")) for m in merges],
                         model_max_length=MAX_TOKENS)


@lru_cache(maxsize=1)
def clip_vocab_and_merges() -> tuple[dict[str, int], tuple[str, ...]]:
    """CLIP's vocabulary layout, with merges learned from :data:`PROMPT_WORDS`.

    As in CLIP: the 256 byte characters, the same with ``</w>`` (end of word), one token per
    merge, then ``<|startoftext|>`` and ``<|endoftext|>`` last.
    """
    byte_chars = list(bytes_to_unicode().values())
    merges = _learn_merges(PROMPT_WORDS.split())
    tokens = byte_chars + [c + "</w>" for c in byte_chars]
    tokens += ["".join(m.split(" ")) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return {t: i for i, t in enumerate(tokens)}, tuple(merges)


def _learn_merges(words: list[str]) -> list[str]:
    # Plain BPE on the distinct words until each is one token; ties go to the alphabetically
    # first pair so the result does not depend on dict order or the Python version.
    seqs = [list(w[:-1]) + [w[-1] + "</w>"] for w in dict.fromkeys(words)]
    merges: list[str] = []
    while True:
        counts: dict[tuple[str, str], int] = {}
        for seq in seqs:
            for pair in zip(seq, seq[1:]):
                counts[pair] = counts.get(pair, 0) + 1
        if not counts:
            break
        best = min(counts, key=lambda p: (-counts[p], p))
        merges.append(f"{best[0]} {best[1]}")
        seqs = [_merge(seq, best) for seq in seqs]
    return merges


def _merge(seq: list[str], pair: tuple[str, str]) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(seq):
        if i + 1 < len(seq) and (seq[i], seq[i + 1]) == pair:
            out.append(seq[i] + seq[i + 1])
            i += 2
        else:
            out.append(seq[i])
            i += 1
    return out
