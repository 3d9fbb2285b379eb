"""The real CLIP tokenizer, built offline from the BPE merges that ``open-clip-torch`` ships.

SD 1.x, SD 2.x, SDXL and SD 3 all tokenize prompts with CLIP's 49,408-token vocabulary. The hub
has it, but a worker may have no network; the same merges are inside the ``open-clip-torch``
wheel (``bpe_simple_vocab_16e6.txt.gz``). We only read that file: importing ``open_clip``
itself would pull in torchvision, which sdfarm does not need.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from sdfarm.errors import ModelError

#: CLIP's context length.
MAX_TOKENS = 77
VOCAB_SIZE = 49408
VOCAB_FILE = "bpe_simple_vocab_16e6.txt.gz"
#: What a working install must give for ``a photo of a cat`` (the ids of the hub's tokenizer).
CHECK = ("a photo of a cat", [49406, 320, 1125, 539, 320, 2368, 49407])


def vocab_path() -> Path:
    """Where the installed ``open-clip-torch`` keeps CLIP's merges."""
    spec = importlib.util.find_spec("open_clip")  # finds the package without importing it
    if spec is None or spec.origin is None:
        raise ModelError(
            "CLIP's vocabulary is not installed: pip install --no-deps open-clip-torch==3.3.0 "
            "(make setup does), or set model_config = to a diffusers folder of the model")
    path = Path(spec.origin).parent / VOCAB_FILE
    if not path.is_file():
        raise ModelError(f"open-clip-torch is installed but has no {VOCAB_FILE} at {str(path)!r}; "
                         f"reinstall it: pip install --no-deps --force-reinstall open-clip-torch==3.3.0")
    return path


@lru_cache(maxsize=1)
def vocab_and_merges() -> tuple[dict[str, int], tuple[str, ...]]:
    """CLIP's vocabulary and merges, laid out as CLIP's own tokenizer builds them."""
    lines = gzip.decompress(vocab_path().read_bytes()).decode("utf-8").split("\n")
    # The first line is a version header; CLIP uses the next 48,894 merges (49,408 tokens minus
    # 512 byte tokens and the two specials).
    merges = tuple(lines[1:VOCAB_SIZE - 512 - 2 + 1])
    byte_chars = list(bytes_to_unicode().values())
    tokens = byte_chars + [c + "</w>" for c in byte_chars]
    tokens += ["".join(m.split(" ")) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return {t: i for i, t in enumerate(tokens)}, merges


def clip_tokenizer(pad_token: str = "<|endoftext|>") -> Any:
    """A transformers ``CLIPTokenizer`` with the real vocabulary. SD 1.x pads with
    ``<|endoftext|>``; SDXL's second encoder and SD 2.x pad with ``!`` (``pad_token="!"``)."""
    from transformers import CLIPTokenizer

    vocab, merges = vocab_and_merges()
    return CLIPTokenizer(vocab=dict(vocab), merges=[tuple(m.split(" ")) for m in merges],
                         model_max_length=MAX_TOKENS, pad_token=pad_token)


def special_ids(pad_token: str = "<|endoftext|>") -> dict[str, int]:
    """A CLIP text encoder's ``bos_token_id`` / ``eos_token_id`` / ``pad_token_id`` for the
    real tokenizer padding with ``pad_token``."""
    vocab, _ = vocab_and_merges()
    return {"bos_token_id": vocab["<|startoftext|>"], "eos_token_id": vocab["<|endoftext|>"],
            "pad_token_id": vocab[pad_token]}


def write_tokenizer_files(folder: Path, pad_token: str = "<|endoftext|>") -> None:
    """Save a real CLIP tokenizer into ``folder`` (``tokenizer.json`` for transformers 5,
    ``vocab.json`` / ``merges.txt`` for transformers 4)."""
    clip_tokenizer(pad_token).save_pretrained(folder)
    vocab, merges = vocab_and_merges()
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n",
                                       encoding="utf-8")


def bytes_to_unicode() -> dict[int, str]:
    """CLIP's (and GPT-2's) table: printable bytes stand for themselves, the rest are shifted
    past 255 so that every byte has a visible, non-space character."""
    printable = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
                 + list(range(ord("®"), ord("ÿ") + 1)))
    table = {b: chr(b) for b in printable}
    for shift, b in enumerate(b for b in range(256) if b not in table):
        table[b] = chr(256 + shift)
    return table
