"""Textual inversion embeddings: which ones a prompt uses, and A1111's ``TI hashes``.

An embedding is a ``.safetensors`` file in the embedding folder (``SDFARM_EMBEDDING_DIR``,
subfolders included); its name is the file's stem. A prompt, positive or negative, uses it by
writing the name as a word. A1111 matches names on CLIP's tokens, so matching here is on the
same pieces CLIP's tokenizer splits text into (runs of letters, single digits, runs of other
signs), lower-cased: "EasyNegative," and "(easynegative:1.2)" use ``easynegative``,
"easynegatives" does not. Extra-network tags (``<lora:...>``) are not text, so a LoRA of the
same name is no use of the embedding.

A1111's hash of an embedding is the first 12 hex digits of its file's sha256. ``TI hashes`` is
A1111's: the positive prompt's embeddings in the order they are first used, then the negative
prompt's, each as ``name: hash`` with ``:`` and ``,`` taken out of the name (A1111 encodes the
negative prompt first and appends what it found to the positive prompt's list, so an embedding
used in both is listed twice).

Pure: the standard library only.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from sdfarm.scheduler.extranets import strip_extra_networks

#: What an embedding file must be: pickles (.pt, .bin) can run code when loaded.
EMBEDDING_SUFFIX = ".safetensors"
PICKLE_SUFFIXES = frozenset({".pt", ".bin", ".ckpt", ".pth"})
#: Hex digits of the sha256 A1111 writes for an embedding (``Embedding.shorthash``).
SHORT_HASH = 12
#: CLIP's pre-tokenizer: letters, one digit, or a run of anything but spaces, letters, digits.
_PIECE = re.compile(r"[^\W\d_]+|\d|(?:[^\s\w]|_)+")


def pieces(text: str) -> tuple[str, ...]:
    """``text`` as CLIP's tokenizer splits it before its byte-pair merges, lower-cased."""
    return tuple(_PIECE.findall(text.lower()))


def infotext_name(name: str) -> str:
    """A name as ``TI hashes`` writes it (A1111 takes out the separators)."""
    return name.replace(":", "").replace(",", "")


@dataclass(frozen=True)
class EmbeddingFile:
    name: str
    path: Path


@dataclass(frozen=True)
class EmbeddingFolder:
    """The embeddings of one folder, by the pieces of their names."""

    folder: Path
    #: pieces of a name -> every file with that name (more than one is ambiguous).
    by_pieces: Mapping[tuple[str, ...], tuple[Path, ...]] = field(default_factory=dict)
    #: Longest name first at each first piece, as A1111 tries them.
    _starts: Mapping[str, tuple[tuple[str, ...], ...]] = field(default_factory=dict)

    @classmethod
    def scan(cls, folder: Path) -> EmbeddingFolder:
        """Every embedding (and pickle, to name it in an error) under ``folder``; an absent
        folder has none."""
        found: dict[tuple[str, ...], list[Path]] = {}
        for root, dirs, files in os.walk(folder, followlinks=True):
            dirs.sort()
            for name in sorted(files):
                path = Path(root, name)
                suffix = path.suffix.lower()
                if suffix != EMBEDDING_SUFFIX and suffix not in PICKLE_SUFFIXES:
                    continue
                key = pieces(path.stem)
                if key:
                    found.setdefault(key, []).append(path)
        starts: dict[str, list[tuple[str, ...]]] = {}
        for key in found:
            starts.setdefault(key[0], []).append(key)
        return cls(folder, {k: tuple(v) for k, v in found.items()},
                   {k: tuple(sorted(v, key=len, reverse=True)) for k, v in starts.items()})

    def used_in(self, prompt: str) -> list[tuple[str, ...]]:
        """The names (as pieces) ``prompt`` uses, in order of first use, each once."""
        if not self.by_pieces:
            return []
        words = pieces(strip_extra_networks(prompt))
        used: dict[tuple[str, ...], None] = {}
        i = 0
        while i < len(words):
            for key in self._starts.get(words[i], ()):
                if words[i:i + len(key)] == key:
                    used[key] = None
                    i += len(key)
                    break
            else:
                i += 1
        return list(used)

    def file(self, key: tuple[str, ...]) -> EmbeddingFile:
        """The one ``.safetensors`` file of a used name; ``ValueError`` with the reason when
        there is none (a pickle only) or several."""
        paths = self.by_pieces[key]
        safe = [p for p in paths if p.suffix.lower() == EMBEDDING_SUFFIX]
        if not safe:
            raise ValueError(
                f"embedding {paths[0].stem!r} is a pickle file ({str(paths[0])!r}), which can "
                f"run code when loaded; convert it to .safetensors")
        if len(safe) > 1:
            shown = ", ".join(repr(str(p)) for p in safe)
            raise ValueError(f"embedding name {safe[0].stem!r} is ambiguous: {shown} (names "
                             "match whatever their case); rename all but one")
        return EmbeddingFile(safe[0].stem, safe[0])


def format_ti_hashes(entries: Iterable[tuple[str, str]]) -> str:
    """``[(name, hash), ...]`` as A1111's ``TI hashes`` value."""
    return ", ".join(f"{infotext_name(name)}: {digest}" for name, digest in entries)


def parse_ti_hashes(text: str) -> list[tuple[str, str]]:
    """A ``TI hashes`` value as ``[(name, hash), ...]`` (repeats kept); empty for ``""``."""
    out = []
    for item in text.split(","):
        name, sep, digest = item.rpartition(":")
        if sep and name.strip():
            out.append((name.strip(), digest.strip()))
    return out


def spelled_as_loaded(prompt: str, names: Iterable[str]) -> str:
    """``prompt`` with each use of these embedding names written as the loaded token (the
    name, lower-cased). CLIP lower-cases all text, so the encoding is the same; but diffusers
    expands a multi-vector embedding's token by plain text replacement, which sees case."""
    tokens = sorted({n.lower() for n in names}, key=len, reverse=True)
    if not tokens:
        return prompt
    # Not inside a longer run of letters, as a name is matched (see ``pieces``).
    pattern = re.compile("|".join(rf"(?<![^\W\d_]){re.escape(t)}(?![^\W\d_])" for t in tokens),
                         re.IGNORECASE)
    return pattern.sub(lambda m: m.group(0).lower(), prompt)
