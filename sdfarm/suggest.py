"""``did you mean``: the known word closest to a misspelled one. Pure (standard library)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

#: Names other tools give the same setting (A1111's infotext and API, ComfyUI's KSampler),
#: which no spelling distance reaches.
ALIASES = {
    "cfg_scale": "cfg", "cfgscale": "cfg", "guidance_scale": "cfg", "scale": "cfg",
    "sampler_name": "sampler", "sampler_index": "sampler", "scheduler": "schedule",
    "schedule_type": "schedule", "seed": "seeds", "negative": "negative_prompt",
    "neg_prompt": "negative_prompt", "num_inference_steps": "steps", "clipskip": "clip_skip",
    "checkpoint": "model", "ckpt": "model", "batch": "batch_size",
}


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'cfg'?)`` for the choice closest to ``word`` (letter case aside),
    or ``""`` when none is close."""
    known = list(choices)
    folded = {c.casefold(): c for c in known}
    alias = ALIASES.get(word.casefold().replace(" ", "_").replace("-", "_"))
    if alias is not None and alias.casefold() in folded:
        return f" (did you mean {folded[alias.casefold()]!r}?)"
    close = difflib.get_close_matches(word.casefold(), list(folded), n=1, cutoff=0.6)
    return f" (did you mean {folded[close[0]]!r}?)" if close else ""
