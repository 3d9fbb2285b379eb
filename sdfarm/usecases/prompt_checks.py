"""What planning says about a sweep's prompts: one longer than CLIP's 75 tokens is encoded in
chunks (how many tokens it has); on Flux and SD 3, A1111's emphasis does not apply (their
prompts are encoded as written) and T5 cuts a prompt past 512 (Flux) or 256 (SD 3) tokens. A
prompt whose emphasis weight is no number is an error.

Counting tokens takes the model's tokenizer (transformers, not torch); a prompt that cannot
be longer than 75 tokens (ASCII, at most 75 characters) is never tokenized, so planning a
sweep of short prompts imports nothing more.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sdfarm.errors import JobFileError
from sdfarm.families import FAMILIES
from sdfarm.scheduler.emphasis import (
    CHUNK_TOKENS,
    SYNTAX_FAMILIES,
    PromptSyntaxError,
    has_syntax,
    parse_attention,
)
from sdfarm.scheduler.extranets import strip_extra_networks
from sdfarm.scheduler.plan import Plan

#: Long prompts named one by one in a warning; the rest are counted.
_NAMED = 3
#: Tokens (with its end token) the T5 encoder of each family reads: its pipeline's default
#: ``max_sequence_length``.
T5_TOKENS = {"flux-dev": 512, "flux-schnell": 512, "sd3": 256}


def _t5_tokens(cache: dict[str, Any], row: Any, plan: Plan, model_dir: Path,
               text: str) -> int | None:
    if row.model not in cache:
        from sdfarm.worker.plan_tokenizer import plan_t5_tokenizer

        cache[row.model] = plan_t5_tokenizer(row.model, row.family, model_dir,
                                             plan.model_config_of(row))
    tokenizer = cache[row.model]
    if tokenizer is None:
        return None
    # a text past the limit is what is being measured: keep transformers' warning out
    getattr(tokenizer, "deprecation_warnings", {})[
        "sequence-length-is-longer-than-the-specified-maximum"] = True
    return len(tokenizer(text).input_ids)


def _excerpt(text: str, width: int = 40) -> str:
    return repr(text if len(text) <= width else text[:width].rstrip() + "...")


def prompt_warnings(plan: Plan, model_dir: Path) -> list[str]:
    """One line per finding, naming the job file and the key; raises :class:`JobFileError`
    for a prompt the A1111 syntax cannot read."""
    path = plan.job.path
    seen: set[tuple[str, str, str, str]] = set()
    tokenizers: dict[str, Any] = {}
    long: dict[str, list[tuple[str, int, int]]] = {}
    literal: dict[str, list[str]] = {}
    t5_tokenizers: dict[str, Any] = {}
    cut: dict[tuple[str, str], list[tuple[str, int]]] = {}
    for row in plan.rows:
        for key, text in (("prompt", row.prompt), ("negative_prompt", row.negative_prompt)):
            ident = (row.model, row.family, key, text)
            if ident in seen or not text:
                continue
            seen.add(ident)
            bare = strip_extra_networks(text)
            try:
                parse_attention(bare)
            except PromptSyntaxError as exc:
                raise JobFileError(path, key, f"{_excerpt(text)}: {exc}") from None
            if row.family not in SYNTAX_FAMILIES:
                if has_syntax(bare):
                    literal.setdefault(row.family, []).append(text)
                limit = T5_TOKENS.get(row.family)
                if limit is not None and not (bare.isascii() and len(bare) < limit):
                    count = _t5_tokens(t5_tokenizers, row, plan, model_dir, bare)
                    if count is not None and count > limit:
                        cut.setdefault((key, row.family), []).append((text, count))
                continue
            if bare.isascii() and len(bare) <= CHUNK_TOKENS:
                continue  # a token is at least one character: no chunks to speak of
            if row.model not in tokenizers:
                from sdfarm.worker.plan_tokenizer import plan_tokenizer

                tokenizers[row.model] = plan_tokenizer(row.model, model_dir,
                                                       plan.model_config_of(row))
            tokenizer = tokenizers[row.model]
            if tokenizer is None:
                continue
            from sdfarm.worker.prompt_encoder import chunk_prompt

            chunked = chunk_prompt(None, tokenizer, text)
            if chunked.tokens > CHUNK_TOKENS:
                long.setdefault(key, []).append((text, chunked.tokens, len(chunked.chunks)))
    out = []
    for key, found in long.items():
        named = "; ".join(f"{_excerpt(t)} has {n} tokens ({c} chunks)" for t, n, c in found[:_NAMED])
        more = f"; and {len(found) - _NAMED} more" if len(found) > _NAMED else ""
        out.append(f"{path}: {key}: longer than the {CHUNK_TOKENS} tokens CLIP reads at once, "
                   f"encoded in chunks of {CHUNK_TOKENS} as A1111 does: {named}{more}")
    for (key, family), found in cut.items():
        named = "; ".join(f"{_excerpt(t)} has {n}" for t, n in found[:_NAMED])
        more = f"; and {len(found) - _NAMED} more" if len(found) > _NAMED else ""
        out.append(f"{path}: {key}: longer than the {T5_TOKENS[family]} tokens the T5 encoder "
                   f"of {FAMILIES[family].title} models reads, and cut there: {named}{more}")
    for family, texts in literal.items():
        more = f" (and {len(texts) - 1} more)" if len(texts) > 1 else ""
        out.append(f"{path}: prompt: {FAMILIES[family].title} models do not read A1111 "
                   f"emphasis or BREAK; {_excerpt(texts[0])}{more} is encoded as written, "
                   f"brackets and all")
    return out
