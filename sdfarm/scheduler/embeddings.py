"""Textual inversion embeddings: which ones a prompt uses, and A1111's ``TI hashes``.

An embedding is a ``.safetensors`` file in the embedding folder (``SDFARM_EMBEDDING_DIR``,
subfolders included); its name is the file's stem. A prompt, positive or negative, uses it by
writing the name as a word. A1111 matches names on CLIP's tokens, so matching here is on the
same pieces CLIP's tokenizer splits text into (runs of letters, single digits, runs of other
signs), lower-cased: "EasyNegative," and "(easynegative:1.2)" use ``easynegative``,
"easynegatives" does not. Extra-network tags (``<lora:...>``) are not text, so a LoRA of the
same name is no use of the embedding (a tag separates the words around it).

The worker loads an embedding under the token ``<name>`` (lower-cased) and writes that token
where the prompt uses the name (:func:`spelled_as_loaded`): a name that is also a word of
CLIP's vocabulary loads too (diffusers refuses to add a token the vocabulary has), and the
token never matches inside another word, as a bare ``spark`` would inside "sparkle".

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
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sdfarm.scheduler.extranets import EXTRA_NETWORK

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


def embedding_token(name: str) -> str:
    """The token an embedding is loaded under (see the module's docstring); without ``:`` and
    angle brackets, so that it never reads as an extra-network tag (``<lora:name:1>``)."""
    return "<" + "".join(c for c in name.lower() if c not in ":<>") + ">"


def _spans(prompt: str) -> list[tuple[str, int, int]]:
    """The prompt's pieces, lower-cased, with where each stands; tags left out."""
    out: list[tuple[str, int, int]] = []
    start = 0
    for stop, resume in [*((m.start(), m.end()) for m in EXTRA_NETWORK.finditer(prompt)),
                         (len(prompt), len(prompt))]:
        out += [(m.group().lower(), m.start(), m.end())
                for m in _PIECE.finditer(prompt, start, stop)]
        start = resume
    return out


def _find(prompt: str, starts: Mapping[str, Sequence[tuple[str, ...]]]
          ) -> Iterator[tuple[tuple[str, ...], int, int]]:
    """Each use of a name: (its pieces, start, end in ``prompt``). ``starts`` maps a first
    piece to the names that begin with it, longest first (A1111 tries the longest first)."""
    spans = _spans(prompt)
    words = [w for w, _, _ in spans]
    i = 0
    while i < len(words):
        for key in starts.get(words[i], ()):
            if tuple(words[i:i + len(key)]) == key:
                yield key, spans[i][1], spans[i + len(key) - 1][2]
                i += len(key)
                break
        else:
            i += 1


def _starts(keys: Iterable[tuple[str, ...]]) -> dict[str, tuple[tuple[str, ...], ...]]:
    grouped: dict[str, list[tuple[str, ...]]] = {}
    for key in keys:
        grouped.setdefault(key[0], []).append(key)
    return {k: tuple(sorted(v, key=len, reverse=True)) for k, v in grouped.items()}


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
        return cls(folder, {k: tuple(v) for k, v in found.items()}, _starts(found))

    def used_in(self, prompt: str) -> list[tuple[str, ...]]:
        """The names (as pieces) ``prompt`` uses, in order of first use, each once."""
        if not self.by_pieces:
            return []
        return list(dict.fromkeys(key for key, _, _ in _find(prompt, self._starts)))

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
    """``prompt`` with each use of these embedding names replaced by its loaded token."""
    tokens = {pieces(n): embedding_token(n) for n in names if pieces(n)}
    if not tokens:
        return prompt
    out, at = [], 0
    for key, start, end in _find(prompt, _starts(tokens)):
        out += [prompt[at:start], tokens[key]]
        at = end
    return "".join([*out, prompt[at:]])
