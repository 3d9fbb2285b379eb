"""A1111's extra-network tags in a prompt: ``<lora:name:0.8>``, ``<hypernet:name:1>``.

The prompt keeps its tags (they are how A1111 records a LoRA, and how a Prompt S/R axis
swaps one); the text encoder never sees them. The grammar is A1111's
(``modules/extra_networks.py``): ``<`` a word ``:`` arguments without ``>`` ``>``, the
arguments split on ``:``; a tag is removed from the text where it stands, so
``"a, <lora:x:1>, b"`` encodes as ``"a, , b"``, as in A1111.

Pure: the standard library only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: A1111's ``re_extra_net``.
EXTRA_NETWORK = re.compile(r"<(\w+):([^>]+)>")


@dataclass(frozen=True, slots=True)
class ExtraNetwork:
    """One tag: its kind (``lora``, ``hypernet``, ...) and its ``:``-separated arguments
    (the first is the name)."""

    kind: str
    args: tuple[str, ...]

    @property
    def name(self) -> str:
        return self.args[0]


def split_extra_networks(prompt: str) -> tuple[str, list[ExtraNetwork]]:
    """``(text without the tags, the tags in prompt order)``."""
    found: list[ExtraNetwork] = []

    def take(match: re.Match[str]) -> str:
        found.append(ExtraNetwork(match.group(1), tuple(match.group(2).split(":"))))
        return ""

    return EXTRA_NETWORK.sub(take, prompt), found


def strip_extra_networks(prompt: str) -> str:
    """The text the encoder sees: the prompt without its tags."""
    return EXTRA_NETWORK.sub("", prompt)
