"""LoRAs the A1111 way: ``<lora:name:weight>`` tags in the prompt, files in the LoRA folder.

The prompt is the truth: its tags say which LoRAs an image uses and at what weight (a weight
axis rewrites them, Prompt S/R swaps them as text). From them come the two things the key and
the batch group need, both plain text so they are columns and infotext values:

- the **LoRA set**, canonical: ``"name:weight"`` items sorted by name, joined by ``,``
  (``"ghibli:0.5,pixel:1"``); two prompts that use the same LoRAs at the same weights share a
  forward pass whatever the order of their tags, and the set is rendered in this order;
- the **hashes**, as A1111 writes ``Lora hashes``: ``"name: hash, ..."`` in prompt order, the
  hash being A1111's (kohya's "addnet" hash: the sha256 of a ``.safetensors`` file's bytes
  after its header, first 12 hex digits, ``extensions-builtin/Lora/network.py``), the name
  without ``:`` and ``,``.

A name is a file's stem in the LoRA folder (or a folder below it), as in A1111. Only
``.safetensors`` files load: a pickle LoRA (``.pt``, ``.ckpt``, ``.bin``) is refused, as a
pickle checkpoint is. Pure: the standard library only.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sdfarm.errors import SdfarmError
from sdfarm.modelref import HASH_CHUNK, PICKLE_SUFFIXES, _read_cache, _remember
from sdfarm.scheduler.extranets import EXTRA_NETWORK, split_extra_networks

#: The tag kind this module applies (A1111's built-in Lora extension).
LORA = "lora"
#: Hex digits of A1111's LoRA short hash.
SHORT_HASH = 12
#: Name of A1111's infotext setting.
LORA_HASHES = "Lora hashes"
#: Largest weight magnitude a tag may give (A1111 takes any number; beyond this it is a typo).
MAX_WEIGHT = 100.0


class LoraError(SdfarmError):
    """A LoRA tag that cannot be used, or a LoRA file that cannot be found or read."""


@dataclass(frozen=True, slots=True)
class LoraUse:
    """One LoRA at one weight."""

    name: str
    weight: float

    @property
    def item(self) -> str:
        return f"{self.name}:{format_weight(self.weight)}"


def format_weight(weight: float) -> str:
    """A weight as tags and the canonical set write it: ``1``, ``0.5``, ``0.25`` (the shortest
    text that reads back as the same float, so two weights never share a text)."""
    if weight == int(weight) and abs(weight) < 1e15:
        return str(int(weight))
    return repr(float(weight))


def lora_uses(prompt: str) -> list[LoraUse]:
    """The LoRAs the prompt's tags name, in prompt order; :class:`LoraError` for a tag sdfarm
    cannot apply (another kind of extra network, a weight that is not a number, a name that
    appears twice)."""
    if "<" not in prompt:  # nearly every prompt: skip the regex
        return []
    _, tags = split_extra_networks(prompt)
    uses: list[LoraUse] = []
    seen: set[str] = set()
    for tag in tags:
        written = f"<{tag.kind}:{':'.join(tag.args)}>"
        if tag.kind != LORA:
            raise LoraError(f"{written}: <{tag.kind}:...> tags are not supported; sdfarm "
                            "applies <lora:name:weight> tags")
        name = tag.name.strip()
        check_name(name, written)
        if len(tag.args) > 2:
            raise LoraError(f"{written}: only <lora:name> and <lora:name:weight> are supported "
                            "(no separate text-encoder/UNet weights)")
        weight = _weight(tag.args[1], written) if len(tag.args) == 2 else 1.0
        if name in seen:
            raise LoraError(f"{written}: LoRA {name!r} appears twice in the prompt; give it once")
        seen.add(name)
        uses.append(LoraUse(name, weight))
    return uses


def check_name(name: str, where: str) -> None:
    """Refuse a name that is not a plain file stem (it becomes a file lookup)."""
    if not name or name in (".", "..") or any(c in name for c in "/\\,\x00"):
        raise LoraError(f"{where}: {name!r} is not a LoRA name (a file name without "
                        "extension, without '/', '\\' or ',')")


def _weight(text: str, where: str) -> float:
    try:
        weight = float(text.strip())
    except ValueError:
        raise LoraError(f"{where}: weight {text.strip()!r} is not a number") from None
    if not math.isfinite(weight) or abs(weight) > MAX_WEIGHT:
        raise LoraError(f"{where}: weight {text.strip()!r} must be a number from "
                        f"-{MAX_WEIGHT:g} to {MAX_WEIGHT:g}")
    return weight


def canonical_set(uses: list[LoraUse]) -> str:
    """The LoRA set's text: ``"a:0.5,b:1"``, sorted by name; ``""`` for none."""
    return ",".join(u.item for u in sorted(uses, key=lambda u: u.name))


def parse_set(text: str) -> list[LoraUse]:
    """:func:`canonical_set`'s text back to its uses."""
    uses = []
    for item in filter(None, text.split(",")):
        name, _, weight = item.rpartition(":")
        uses.append(LoraUse(name, float(weight)))
    return uses


def hashes_text(uses: list[LoraUse], hash_of: Callable[[str], str]) -> str:
    """A1111's ``Lora hashes`` value for these uses, in their (prompt) order."""
    return ", ".join(f"{u.name.replace(':', '').replace(',', '')}: {hash_of(u.name)}"
                     for u in uses)


def parse_hashes(text: str) -> dict[str, str]:
    """``Lora hashes`` back to ``{name: hash}`` (as A1111 writes it, or as read from an image:
    items without a hash are left out)."""
    out: dict[str, str] = {}
    for item in text.split(","):
        name, sep, digest = item.rpartition(":")
        if sep and name.strip() and digest.strip():
            out[name.strip()] = digest.strip().lower()
    return out


def set_weight(prompt: str, name: str, weight: float) -> str:
    """``prompt`` with LoRA ``name`` at ``weight``: its tags rewritten where they stand, or a
    tag appended after a space when the prompt has none (the space is no token: the text
    encoder sees the prompt as written)."""
    tag = f"<{LORA}:{name}:{format_weight(weight)}>"
    found = False

    def rewrite(match) -> str:
        nonlocal found
        if match.group(1) != LORA or match.group(2).split(":")[0].strip() != name:
            return match.group(0)
        found = True
        return tag

    rewritten = EXTRA_NETWORK.sub(rewrite, prompt)
    return rewritten if found else f"{prompt} {tag}"


# Files: where a name's LoRA is, and its hash.

#: Suffix of the only LoRA files sdfarm loads.
SAFE_SUFFIX = ".safetensors"


def find_lora(folder: Path, name: str) -> Path:
    """The ``.safetensors`` file of LoRA ``name`` in ``folder`` (or a folder below it);
    :class:`LoraError` naming the folder searched when there is none, or only a pickle."""
    direct = folder / f"{name}{SAFE_SUFFIX}"
    if direct.is_file():
        return direct
    found: list[Path] = []
    pickles: list[Path] = []
    if folder.is_dir():
        for root, _dirs, files in os.walk(folder, followlinks=True):
            for file in files:
                stem, suffix = os.path.splitext(file)
                if stem != name:
                    continue
                if suffix.lower() == SAFE_SUFFIX:
                    found.append(Path(root) / file)
                elif suffix.lower() in PICKLE_SUFFIXES:
                    pickles.append(Path(root) / file)
    if len(found) == 1:
        return found[0]
    if len(found) > 1:
        shown = ", ".join(str(p.relative_to(folder)) for p in sorted(found))
        raise LoraError(f"LoRA {name!r} is ambiguous in {folder}: {shown}; rename one")
    if pickles:
        raise LoraError(f"LoRA {name!r} is a pickle file ({pickles[0]}); loading one can run "
                        "arbitrary code hidden in it. Convert it to .safetensors")
    where = f"{folder}" if folder.is_dir() else f"{folder} (no such folder)"
    raise LoraError(f"LoRA {name!r} not found: no {name}{SAFE_SUFFIX} in {where}; put the "
                    "file there or set SDFARM_LORA_DIR")


def addnet_hash(path: Path) -> str:
    """kohya's "addnet" hash of a safetensors file, as A1111 computes a LoRA's: the sha256 of
    everything after the 8-byte header length and the header."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        header = f.read(8)
        if len(header) < 8:
            raise LoraError(f"{path} is not a safetensors file (too short)")
        f.seek(8 + int.from_bytes(header, "little"))
        while chunk := f.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def lora_hash(path: Path, cache_file: Path | None = None) -> str:
    """A1111's short hash of a LoRA file (12 hex digits), cached like model hashes (by real
    path, size and mtime) in ``cache_file`` when given."""
    real = os.path.realpath(path)
    try:
        stat = os.stat(real)
    except OSError as exc:
        raise LoraError(f"cannot read LoRA {path}: {exc.strerror or exc}") from None
    key = f"addnet:{real}"
    if cache_file is not None:
        entry = _read_cache(cache_file).get(key)
        if (isinstance(entry, dict) and entry.get("size") == stat.st_size
                and entry.get("mtime_ns") == stat.st_mtime_ns
                and isinstance(entry.get("sha256"), str)):
            return entry["sha256"][:SHORT_HASH]
    try:
        digest = addnet_hash(Path(real))
    except OSError as exc:
        raise LoraError(f"cannot read LoRA {path}: {exc.strerror or exc}") from None
    if cache_file is not None:
        _remember(cache_file, key, {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
                                    "sha256": digest})
    return digest[:SHORT_HASH]


class LoraFolder:
    """The LoRA folder as planning sees it: each name found and hashed once per plan."""

    def __init__(self, folder: Path, cache_file: Path | None = None) -> None:
        self.folder = folder
        self.cache_file = cache_file
        self._hashes: dict[str, str] = {}

    def hash_of(self, name: str) -> str:
        if name not in self._hashes:
            self._hashes[name] = lora_hash(find_lora(self.folder, name), self.cache_file)
        return self._hashes[name]


@dataclass(frozen=True, slots=True)
class LoraFields:
    """What a prompt's tags set on its spec."""

    loras: str
    lora_hashes: str


def lora_fields(prompt: str, hash_of: Callable[[str], str] | None) -> LoraFields:
    """The spec fields of ``prompt``'s LoRAs; hashes left empty without ``hash_of`` (a plan
    made without a LoRA folder, an image whose LoRAs are not here)."""
    uses = lora_uses(prompt)
    if not uses:
        return LoraFields("", "")
    return LoraFields(canonical_set(uses), hashes_text(uses, hash_of) if hash_of else "")
