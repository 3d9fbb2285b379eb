"""Whether a prompt is literal text, with no template syntax at all. Pure: this is the check
that lets planning a sweep of plain prompts skip importing dynamicprompts (and pyparsing).

Conservative by construction: a prompt is literal only when every character is a letter, a
digit or common punctuation, and it holds none of dynamicprompts' markers (``{...}``
variants, ``__wildcards__``, ``${variables}``, ``\\`` escapes, ``#``, ``//`` and ``/* */``
comments). dynamicprompts gives such a prompt back unchanged (a test checks it on random text).
"""

from __future__ import annotations

#: Punctuation that has no meaning to dynamicprompts on its own.
_PLAIN_PUNCTUATION = frozenset(" \n,.:;()[]'\"!?-+=*<>|~@&^`_/")
_MARKERS = ("__", "//", "/*")


def is_literal(template: str) -> bool:
    """True when ``template`` expands to itself alone."""
    return (all(c.isalnum() or c in _PLAIN_PUNCTUATION for c in template)
            and not any(m in template for m in _MARKERS))
