"""A small T5 tokenizer, generated offline, for the built-in Flux and SD3 models.

Flux and SD 3 read prompts through T5 as well as CLIP. The real T5 vocabulary (SentencePiece,
32,000 pieces) lives on the hub only, and a worker may have no network; a random-weight toy
model needs T5's tokenizer *kind*, not its pieces. So we train a SentencePiece-style Unigram
with the ``tokenizers`` library on a fixed word list, lay it out as T5 does (``<pad>`` 0,
``</s>`` 1, ``<unk>`` 2, ``</s>`` after every text) and wrap it in transformers' T5 tokenizer,
which saves and reloads like the real one.
"""

from __future__ import annotations

import json
from typing import Any

from sdfarm.worker.builtin import PROMPT_WORDS

#: T5's special tokens, at T5's ids.
SPECIAL_TOKENS = ("<pad>", "</s>", "<unk>")
#: Flux's and SD3's T5 tokenizers take up to 512 tokens.
MAX_TOKENS = 512
#: Upper bound for the trainer; the word list gives ~300 pieces, all it has evidence for.
VOCAB_LIMIT = 1000
#: Printable ASCII besides the words' letters, so digits, capitals and punctuation become
#: pieces of their own rather than ``<unk>``.
ALPHABET = [chr(c) for c in range(ord("!"), ord("~") + 1)]
#: How often the trainer sees each word of the list.
WORD_REPEATS = 8
#: Scores are rounded to this many decimals: the trainer's sums differ in the last bits from
#: run to run (hash-map order), and the saved tokenizer must be the same bytes every time.
SCORE_DECIMALS = 6


def t5_tokenizer() -> Any:
    """A transformers ``T5TokenizerFast`` (transformers 5: ``T5Tokenizer``) with a Unigram
    vocabulary learned from :data:`~sdfarm.worker.builtin.PROMPT_WORDS`, identical on every
    call and every machine."""
    from transformers import T5TokenizerFast

    return T5TokenizerFast(tokenizer_object=_backend(_vocabulary()), extra_ids=0,
                           model_max_length=MAX_TOKENS)


def _vocabulary() -> list[tuple[str, float]]:
    """Train the Unigram, then fix its layout: specials first, the rest by score, then piece."""
    from tokenizers import Tokenizer, models, trainers

    trainee = Tokenizer(models.Unigram())
    trainee.pre_tokenizer = _pre_tokenizer()
    trainer = trainers.UnigramTrainer(vocab_size=VOCAB_LIMIT, special_tokens=list(SPECIAL_TOKENS),
                                      unk_token="<unk>", show_progress=False)
    # Each word several times over, as in real text: seen once, a word would be left in pieces.
    trainee.train_from_iterator(PROMPT_WORDS.split() * WORD_REPEATS, trainer=trainer)
    learned = json.loads(trainee.to_str())["model"]["vocab"]  # [[piece, score], ...]
    pieces = sorted(((p, round(s, SCORE_DECIMALS)) for p, s in learned if p not in SPECIAL_TOKENS),
                    key=lambda ps: (-ps[1], ps[0]))
    # The trainer would order unseen alphabet characters by hash-map order; add them here,
    # in code-point order, less likely than anything learned.
    known = {p for p, _ in pieces}
    floor = pieces[-1][1]
    pieces += [(c, round(floor - 1.0, SCORE_DECIMALS)) for c in ALPHABET if c not in known]
    return [(s, 0.0) for s in SPECIAL_TOKENS] + pieces


def _pre_tokenizer() -> Any:
    # T5's own: split at whitespace, then mark each word's start with "▁".
    from tokenizers import pre_tokenizers

    return pre_tokenizers.Sequence([
        pre_tokenizers.WhitespaceSplit(),
        pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True),
    ])


def _backend(vocab: list[tuple[str, float]]) -> Any:
    from tokenizers import Tokenizer, decoders, models, processors

    tokenizer = Tokenizer(models.Unigram(vocab, unk_id=SPECIAL_TOKENS.index("<unk>")))
    tokenizer.pre_tokenizer = _pre_tokenizer()
    tokenizer.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    eos = SPECIAL_TOKENS.index("</s>")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", eos)])
    return tokenizer
