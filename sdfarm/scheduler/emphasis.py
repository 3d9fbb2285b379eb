"""A1111's prompt syntax: emphasis, ``BREAK`` and prompts longer than 75 tokens.

Two steps, both A1111's (``modules/prompt_parser.py`` ``parse_prompt_attention`` and
``modules/sd_hijack_clip.py`` ``tokenize_line``), written anew here:

* :func:`parse_attention` splits a prompt into ``(text, weight)`` fragments: ``(word)``
  multiplies by 1.1, ``[word]`` divides by 1.1, ``(word:1.3)`` multiplies by 1.3, brackets
  nest, ``\\(`` ``\\)`` ``\\[`` ``\\]`` ``\\\\`` are literal, a bracket left open weighs to the
  end, and ``BREAK`` (upper case, a word of its own) is a marker. Neighbours of equal weight
  merge, so a prompt without syntax is one fragment: its own text at weight 1.
* :func:`chunk_tokens` lays the fragments' token ids out in chunks of 75 (77 with the start
  and end tokens), as CLIP reads them: a full chunk is cut back to its last comma when that
  comma is within :data:`COMMA_BACKTRACK` tokens of the end, the rest moving on to the next
  chunk; ``BREAK`` closes a chunk.

Pure: the standard library only. The token ids come from the model's own tokenizer
(:mod:`sdfarm.worker.prompt_encoder` at render time, :mod:`sdfarm.usecases.prompt_checks` at
plan time).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from sdfarm.errors import SdfarmError

#: Families whose prompts are read with this syntax (their CLIP encoders); Flux and SD 3 keep
#: their pipeline's own encoding, where T5 reads the prompt (emphasis does not apply there).
SYNTAX_FAMILIES = frozenset({"sd1", "sd2", "sdxl"})
#: Prompt tokens per chunk (CLIP's 77 less its start and end tokens).
CHUNK_TOKENS = 75
#: A1111's ``comma_padding_backtrack``: how far back from a full chunk's end a comma may be
#: for the words after it to move on to the next chunk whole.
COMMA_BACKTRACK = 20
ROUND_MULTIPLIER = 1.1
SQUARE_MULTIPLIER = 1 / 1.1
#: The weight A1111 gives its BREAK marker (a fragment no text has).
BREAK_WEIGHT = -1.0

# A1111's ``re_attention``, alternative by alternative: the escapes, a lone backslash, the
# opening brackets, ``:weight)`` (spaces allowed around the number), the closing brackets,
# a run of plain text, a lone colon.
_ATTENTION = re.compile(r"""
\\\(|\\\)|\\\[|\\]|\\\\|\\|
\(|\[|
:\s*([+-]?[.\d]+)\s*\)|
\)|]|
[^\\()\[\]:]+|
:
""", re.X)
_BREAK = re.compile(r"\s*\bBREAK\b\s*", re.S)
#: Characters without which a prompt has no syntax at all (the BREAK word aside).
_SYNTAX_CHARS = frozenset("()[]\\")


class PromptSyntaxError(SdfarmError):
    """A prompt the A1111 syntax cannot read (an emphasis weight that is no number)."""


@dataclass(frozen=True, slots=True)
class Fragment:
    text: str
    weight: float

    @property
    def is_break(self) -> bool:
        return self.text == "BREAK" and self.weight == BREAK_WEIGHT


def parse_attention(text: str) -> list[Fragment]:
    """A1111's ``parse_prompt_attention``: the prompt as fragments of text and their weight.

    As in A1111, the weights are multiplied in the order the brackets close (so
    ``(((house:1.3))`` weighs ``1.3 * 1.1 * 1.1`` = 1.5730000000000004), a closing bracket
    with no opening one is text, and the BREAK marker is ``Fragment("BREAK", -1.0)`` (inside
    brackets its weight changes too and it is then the word "BREAK", as in A1111).
    A weight that is no number (``(cat:1.2.3)``) raises :class:`PromptSyntaxError` where
    A1111 fails the generation with a traceback.
    """
    res: list[list] = []
    round_open: list[int] = []
    square_open: list[int] = []

    def multiply(start: int, by: float) -> None:
        for item in res[start:]:
            item[1] *= by

    for match in _ATTENTION.finditer(text):
        part, weight = match.group(0), match.group(1)
        if part.startswith("\\"):
            res.append([part[1:], 1.0])
        elif part == "(":
            round_open.append(len(res))
        elif part == "[":
            square_open.append(len(res))
        elif weight is not None and round_open:
            try:
                value = float(weight)
            except ValueError:
                raise PromptSyntaxError(
                    f"emphasis weight {weight!r} in {match.group(0)!r} is not a number; write "
                    f"(text:1.2), or \\( \\) for literal brackets") from None
            multiply(round_open.pop(), value)
        elif part == ")" and round_open:
            multiply(round_open.pop(), ROUND_MULTIPLIER)
        elif part == "]" and square_open:
            multiply(square_open.pop(), SQUARE_MULTIPLIER)
        else:
            for i, piece in enumerate(_BREAK.split(part)):
                if i:
                    res.append(["BREAK", BREAK_WEIGHT])
                res.append([piece, 1.0])
    for start in round_open:
        multiply(start, ROUND_MULTIPLIER)
    for start in square_open:
        multiply(start, SQUARE_MULTIPLIER)
    if not res:
        res = [["", 1.0]]
    merged: list[list] = [res[0]]
    for item in res[1:]:
        if item[1] == merged[-1][1]:
            merged[-1][0] += item[0]
        else:
            merged.append(item)
    return [Fragment(t, w) for t, w in merged]


def has_syntax(text: str) -> bool:
    """Whether the A1111 syntax reads ``text`` as anything but itself at weight 1 (emphasis,
    escapes, BREAK). Cheap for the common plain prompt."""
    if not (_SYNTAX_CHARS.intersection(text) or "BREAK" in text):
        return False
    return parse_attention(text) != [Fragment(text, 1.0)]


@dataclass(frozen=True, slots=True)
class Chunk:
    """77 token ids (start, 75 prompt or padding tokens, end, padding) and each one's weight."""

    tokens: tuple[int, ...]
    weights: tuple[float, ...]
    #: Prompt tokens in it (the rest, up to 75, is padding).
    used: int

    @property
    def plain(self) -> bool:
        return all(w == 1.0 for w in self.weights)


@dataclass(frozen=True, slots=True)
class ChunkedPrompt:
    chunks: tuple[Chunk, ...]
    #: The prompt's tokens, without start, end and padding tokens.
    tokens: int


@dataclass(frozen=True, slots=True)
class SpecialTokens:
    """A tokenizer's ids that chunking needs. ``pad`` fills a chunk after its end token (SD
    1.x pads with the end token itself; SDXL's second encoder and SD 2.x with ``!``)."""

    start: int
    end: int
    pad: int
    #: The id of ``,`` as a word of its own (``,</w>``); ``None``: no comma backtrack.
    comma: int | None
    #: Multi-vector textual-inversion embeddings: the token ids of each one's vectors, by
    #: its first id. A chunk never splits one (A1111 moves it to the next chunk whole).
    embeddings: Mapping[int, tuple[int, ...]] = field(default_factory=dict)


def chunk_tokens(fragments: Sequence[Fragment], token_ids: Sequence[Sequence[int]],
                 special: SpecialTokens) -> ChunkedPrompt:
    """Lay out ``fragments`` (their token ids, tokenized one fragment at a time without
    start/end tokens, in ``token_ids``) in chunks, as A1111's ``tokenize_line`` does.

    A prompt of up to 75 tokens and no BREAK is one chunk: exactly what the tokenizer itself
    gives with ``padding="max_length", max_length=77``.
    """
    chunks: list[Chunk] = []
    body: list[int] = []
    weights: list[float] = []
    last_comma = -1

    def close() -> None:
        nonlocal body, weights, last_comma
        fill = CHUNK_TOKENS - len(body)
        chunks.append(Chunk((special.start, *body, special.end, *[special.pad] * fill),
                            (1.0, *weights, 1.0, *[1.0] * fill), len(body)))
        body, weights, last_comma = [], [], -1

    count = 0
    for fragment, ids in zip(fragments, token_ids, strict=True):
        if fragment.is_break:
            close()
            continue
        count += len(ids)
        position = 0
        while position < len(ids):
            token = ids[position]
            if token == special.comma:
                last_comma = len(body)
            elif (len(body) == CHUNK_TOKENS and last_comma != -1
                  and len(body) - last_comma <= COMMA_BACKTRACK):
                cut = last_comma + 1
                moved, moved_weights = body[cut:], weights[cut:]
                body, weights = body[:cut], weights[:cut]
                close()
                body, weights = moved, moved_weights
            if len(body) == CHUNK_TOKENS:
                close()
            run = special.embeddings.get(token)
            span = 1
            if run is not None and tuple(ids[position:position + len(run)]) == run:
                span = len(run)
                if len(body) + span > CHUNK_TOKENS:
                    close()
            body.extend(ids[position:position + span])
            weights.extend([fragment.weight] * span)
            position += span
    if body or not chunks:
        close()
    return ChunkedPrompt(tuple(chunks), count)


def empty_chunk(special: SpecialTokens) -> Chunk:
    """The chunk of an empty prompt: what a prompt is padded with to another's chunk count."""
    return chunk_tokens([Fragment("", 1.0)], [[]], special).chunks[0]
