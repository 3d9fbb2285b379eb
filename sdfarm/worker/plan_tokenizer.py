"""The tokenizer a model reads prompts with, without loading the model: planning counts a
long prompt's tokens with it.

A built-in model's is built in memory; a diffusers folder's (or a single file's config
folder's, or a cached hub model's) is its ``tokenizer/`` folder; anything else of the CLIP
families (a single file with sdfarm's own configs) reads prompts with CLIP's own vocabulary.
Imports transformers (never torch), and only when a prompt may be longer than 75 tokens.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sdfarm.errors import ModelError
from sdfarm.modelref import cached_hub_folder, parse_model_ref

#: Built-in models whose tokenizer is the tiny generated one (the others use CLIP's own).
_TINY_VOCAB = frozenset({"tiny", "sd15"})


def plan_tokenizer(model: str, model_dir: Path, model_config: str | None = None) -> Any | None:
    """The CLIP tokenizer of ``model`` (a plan's resolved model reference), or ``None`` when
    it cannot be had here (a hub model not downloaded, CLIP's vocabulary not installed)."""
    try:
        mref = parse_model_ref(model, model_dir, model_config=model_config, allow_pickle=True)
    except ModelError:
        return None
    try:
        if mref.kind == "builtin":
            name = model.removeprefix("builtin:")
            if name in _TINY_VOCAB:
                from sdfarm.worker.builtin import clip_tokenizer

                return clip_tokenizer()
            from sdfarm.worker.clip_vocab import clip_tokenizer as real_clip_tokenizer

            return real_clip_tokenizer()
        folder: Path | None = None
        if mref.kind == "folder":
            folder = mref.path
        elif mref.kind == "file" and mref.config is not None:
            folder = mref.config
        elif mref.kind == "hub":
            folder = cached_hub_folder(mref.ref)
            if folder is None:
                return None
        if folder is not None and (folder / "tokenizer").is_dir():
            from transformers import CLIPTokenizer

            return CLIPTokenizer.from_pretrained(folder / "tokenizer")
        from sdfarm.worker.clip_vocab import clip_tokenizer as real_clip_tokenizer

        return real_clip_tokenizer()
    except (ModelError, OSError, ValueError):
        return None


#: Where a Flux or SD 3 diffusers folder keeps its T5 tokenizer.
T5_FOLDERS = {"flux-dev": "tokenizer_2", "flux-schnell": "tokenizer_2", "sd3": "tokenizer_3"}


def plan_t5_tokenizer(model: str, family: str, model_dir: Path,
                      model_config: str | None = None) -> Any | None:
    """The T5 tokenizer of a Flux or SD 3 ``model``, or ``None`` when it is not here."""
    try:
        mref = parse_model_ref(model, model_dir, model_config=model_config, allow_pickle=True)
        if mref.kind == "builtin":
            from sdfarm.worker.t5_vocab import t5_tokenizer

            return t5_tokenizer()
        folder = {"folder": mref.path, "file": mref.config}.get(mref.kind)
        if mref.kind == "hub":
            folder = cached_hub_folder(mref.ref)
        if folder is None or not (folder / T5_FOLDERS[family]).is_dir():
            return None
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(folder / T5_FOLDERS[family])
    except (ModelError, OSError, ValueError, KeyError):
        return None
