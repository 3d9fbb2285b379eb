"""Prompt embeddings the A1111 way, for the CLIP families (SD 1.x, SD 2.x, SDXL).

Each prompt is read by :mod:`sdfarm.scheduler.emphasis` (extra-network tags removed first,
textual-inversion names expanded by the pipeline's ``maybe_convert_prompt``), tokenized with
the pipeline's own tokenizer(s), laid out in chunks of 75 tokens, and each chunk is encoded
on its own; the chunks' embeddings are concatenated (77 vectors per chunk). A prompt and its
negative are padded to the same chunk count with the empty prompt's chunk, as A1111's "pad
prompt/negative prompt" option does. Emphasis is A1111's "Original": the chunk's vectors are
multiplied by their tokens' weights, then scaled back to the chunk's original mean.

Two choices differ from A1111 on purpose, so that an image's pixels depend on its own
parameters only (the key), never on the other images of its pass:

* the mean is restored per image, where A1111 takes it over its whole batch (the same for a
  batch of one, A1111's usual case);
* images whose prompts need different chunk counts are not padded to the longest of the pass:
  :func:`chunk_counts` lets the renderer run them as separate passes.

A plain prompt of up to 75 tokens is the tokenizer's own ``max_length`` padding, encoded by
the same call the pipeline's ``encode_prompt`` makes: bit-identical embeddings.

SDXL: both encoders read from their penultimate layer (no final layer norm), each chunk's
vectors are the two encoders' side by side, emphasis applies to each encoder's own output,
and the pooled vector is the second encoder's for the first chunk (A1111's choice).
CLIP skip (SD 1.x/2.x) reads ``hidden_states[-n]`` and applies the final layer norm, as A1111.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sdfarm.scheduler.emphasis import (
    SYNTAX_FAMILIES,
    Chunk,
    ChunkedPrompt,
    SpecialTokens,
    chunk_tokens,
    empty_chunk,
    parse_attention,
)
from sdfarm.scheduler.extranets import strip_extra_networks

if TYPE_CHECKING:
    from sdfarm.spec import RenderSpec

#: Renders some images of a pass with a step hook of their own.
RenderPart = Callable[[list["RenderSpec"], Callable[[], None]], list]

#: Families whose prompts this module encodes; the others (Flux, SD 3) keep their pipeline's
#: own encoding (planning says that emphasis does not apply there).
ENCODED_FAMILIES = SYNTAX_FAMILIES


def _pairs(pipe: Any, family: str) -> list[tuple[Any, Any]]:
    """(tokenizer, text encoder) of each CLIP the family reads prompts with."""
    pairs = [(pipe.tokenizer, pipe.text_encoder)]
    if family == "sdxl":
        pairs.append((pipe.tokenizer_2, pipe.text_encoder_2))
    return [(t, e) for t, e in pairs if t is not None and e is not None]


def special_tokens(tokenizer: Any) -> SpecialTokens:
    comma = tokenizer.convert_tokens_to_ids(",</w>")
    if comma is None or comma == tokenizer.unk_token_id:
        comma = None
    return SpecialTokens(tokenizer.bos_token_id, tokenizer.eos_token_id,
                         tokenizer.pad_token_id, comma, _embedding_runs(tokenizer))


def _embedding_runs(tokenizer: Any) -> dict[int, tuple[int, ...]]:
    """diffusers' ``load_textual_inversion`` adds an embedding of n vectors as the tokens
    ``name``, ``name_1`` ... ``name_{n-1}`` (``maybe_convert_prompt`` writes them all for
    ``name``): each multi-vector run's ids, by its first id."""
    added = getattr(tokenizer, "added_tokens_encoder", None) or {}
    runs: dict[int, tuple[int, ...]] = {}
    for name, first in added.items():
        ids = [first]
        while f"{name}_{len(ids)}" in added:
            ids.append(added[f"{name}_{len(ids)}"])
        if len(ids) > 1:
            runs[first] = tuple(ids)
    return runs


def chunk_prompt(pipe: Any, tokenizer: Any, prompt: str) -> ChunkedPrompt:
    """``prompt``'s chunks for ``tokenizer`` (one of ``pipe``'s; no pipeline at plan time,
    where textual-inversion names stay words)."""
    # Token ids past 77 are what chunking is for: keep transformers' "longer than the maximum
    # sequence length" warning (logged once per tokenizer) out of the worker's output.
    getattr(tokenizer, "deprecation_warnings", {})[
        "sequence-length-is-longer-than-the-specified-maximum"] = True
    text = strip_extra_networks(prompt)
    if pipe is not None and hasattr(pipe, "maybe_convert_prompt"):
        # Textual inversion: a multi-vector embedding's name becomes its vectors' tokens.
        text = pipe.maybe_convert_prompt(text, tokenizer)
    fragments = parse_attention(text)
    ids = tokenizer([f.text for f in fragments], truncation=False,
                    add_special_tokens=False)["input_ids"]
    return chunk_tokens(fragments, ids, special_tokens(tokenizer))


@dataclass(frozen=True)
class PreparedText:
    """One image's prompt and negative prompt, chunked for each of its encoders and padded
    to one chunk count."""

    #: Per encoder: (prompt chunks, negative chunks), both ``chunks`` long.
    per_encoder: tuple[tuple[tuple[Chunk, ...], tuple[Chunk, ...]], ...]
    chunks: int


def prepare(pipe: Any, family: str, prompt: str, negative: str) -> PreparedText:
    pairs = _pairs(pipe, family)
    chunked = [(chunk_prompt(pipe, t, prompt), chunk_prompt(pipe, t, negative)) for t, _ in pairs]
    count = max(len(c.chunks) for both in chunked for c in both)
    per_encoder = []
    for (tokenizer, _), (positive, negative_chunks) in zip(pairs, chunked, strict=True):
        empty = empty_chunk(special_tokens(tokenizer))
        per_encoder.append(tuple((*c.chunks, *[empty] * (count - len(c.chunks)))
                                 for c in (positive, negative_chunks)))
    return PreparedText(tuple(per_encoder), count)  # type: ignore[arg-type]


def chunk_counts(pipe: Any, family: str, prompts: Sequence[str], negatives: Sequence[str]) -> list[int]:
    """Chunks each image's embeddings need (images with different counts cannot share a
    forward pass without changing each other's pixels)."""
    if family not in ENCODED_FAMILIES:
        return [1] * len(prompts)
    return [prepare(pipe, family, p, n).chunks for p, n in zip(prompts, negatives, strict=True)]


def encode_prompts(pipe: Any, family: str, prompts: Sequence[str], negatives: Sequence[str],
                   clip_skip: int = 1) -> dict[str, Any]:
    """The pipeline call's embedding arguments for these images (all needing one chunk
    count: see :func:`chunk_counts`)."""
    import torch

    prepared = [prepare(pipe, family, p, n) for p, n in zip(prompts, negatives, strict=True)]
    counts = {p.chunks for p in prepared}
    if len(counts) != 1:
        raise ValueError(f"images of one pass need one chunk count, got {sorted(counts)}")
    device = pipe._execution_device
    xl = family == "sdxl"
    out: dict[str, Any] = {}
    for side, (embeds_name, pooled_name) in enumerate((
            ("prompt_embeds", "pooled_prompt_embeds"),
            ("negative_prompt_embeds", "negative_pooled_prompt_embeds"))):
        per_encoder = []
        pooled = None
        for e, (_tokenizer, encoder) in enumerate(_pairs(pipe, family)):
            chunks = []
            for c in range(prepared[0].chunks):
                batch = [p.per_encoder[e][side][c] for p in prepared]
                hidden, chunk_pooled = _encode_chunk(encoder, batch, device, clip_skip, xl)
                if pooled is None and c == 0 and chunk_pooled is not None:
                    pooled = chunk_pooled
                chunks.append(hidden)
            per_encoder.append(torch.cat(chunks, dim=1) if len(chunks) > 1 else chunks[0])
        embeds = torch.cat(per_encoder, dim=-1) if len(per_encoder) > 1 else per_encoder[0]
        # The pipeline's own cast: to the (last) text encoder's dtype.
        out[embeds_name] = embeds.to(dtype=_pairs(pipe, family)[-1][1].dtype, device=device)
        if xl:
            out[pooled_name] = pooled
    return out


def _encode_chunk(encoder: Any, batch: list[Chunk], device: Any, clip_skip: int, xl: bool):
    """One chunk of every image through ``encoder``: (embeddings with emphasis, the pooled
    output when the encoder has a projection, else None)."""
    import torch

    ids = torch.tensor([list(c.tokens) for c in batch], dtype=torch.long, device=device)
    kwargs: dict[str, Any] = {}
    if getattr(encoder.config, "use_attention_mask", False):
        kwargs["attention_mask"] = _attention_mask(ids, batch)
    with torch.no_grad():
        if xl:
            # SDXL reads both encoders' penultimate layer, without the final layer norm.
            result = encoder(ids, output_hidden_states=True, **kwargs)
            hidden = result.hidden_states[-2]
            pooled = result[0] if result[0].ndim == 2 else None
        elif clip_skip > 1:
            result = encoder(ids, output_hidden_states=True, **kwargs)
            norm = getattr(encoder, "text_model", encoder).final_layer_norm
            hidden, pooled = norm(result.hidden_states[-clip_skip]), None
        else:
            hidden, pooled = encoder(ids, **kwargs)[0], None
        if not all(c.plain for c in batch):
            hidden = _emphasize(hidden, batch)
    return hidden, pooled


def _emphasize(hidden, batch: list[Chunk]):
    """A1111's "Original" emphasis, image by image: multiply each token's vector by its
    weight, then scale the image's chunk back to its original mean."""
    import torch

    rows = []
    for z, chunk in zip(hidden, batch, strict=True):
        if chunk.plain:
            rows.append(z)
            continue
        weights = torch.tensor(chunk.weights, dtype=torch.float32, device=z.device)
        z32 = z.float()
        original = z32.mean()
        weighted = z32 * weights[:, None]
        new = weighted.mean()
        # A mean near 0 (a final layer norm without bias centres every token on 0: random
        # weights do that) is noise; dividing by it would blow the vectors up to inf/NaN or flip
        # their sign. Real CLIP's means are far from 0, where this is A1111's restore.
        if new * original > 0 and new.abs() > _MEAN_FLOOR * z32.abs().mean():
            weighted = weighted * (original / new)
        rows.append(weighted.to(z.dtype))
    return torch.stack(rows)


#: Below this share of the mean magnitude, a chunk's mean is not restored (see _emphasize).
_MEAN_FLOOR = 1e-2


def _attention_mask(ids, batch: list[Chunk]):
    # The tokenizer's mask: ones through the end token, zeros over the padding after it.
    import torch

    mask = torch.zeros_like(ids)
    for row, chunk in enumerate(batch):
        mask[row, : chunk.used + 2] = 1
    return mask


def split_by_chunk_count(pipe: Any, specs: Sequence[RenderSpec],
                         on_step: Callable[[], None]) -> Callable[[RenderPart], list] | None:
    """``None`` when every image of the pass needs one chunk count (the usual case); else a
    function that renders the pass as one sub-pass per chunk count, through ``render_part``,
    and returns the images in the pass's order. The sub-passes share the step hook so that
    it still runs once per step of the whole pass (every n-th step of n sub-passes)."""
    family = specs[0].family
    if len(specs) < 2 or family not in ENCODED_FAMILIES:
        return None
    counts = chunk_counts(pipe, family, [s.prompt for s in specs],
                          [s.negative_prompt for s in specs])
    groups: dict[int, list[int]] = {}
    for i, count in enumerate(counts):
        groups.setdefault(count, []).append(i)
    if len(groups) == 1:
        return None
    calls = 0

    def shared_step() -> None:
        nonlocal calls
        calls += 1
        if calls % len(groups) == 0:
            on_step()

    def run(render_part: RenderPart) -> list:
        images: list = [None] * len(specs)
        for indices in groups.values():
            rendered = render_part([specs[i] for i in indices], shared_step)
            for i, image in zip(indices, rendered, strict=True):
                images[i] = image
        return images

    return run
