"""The user's search syntax, and its translation into SQLite FTS5 MATCH and PostgreSQL tsquery.

Syntax: words (all must appear), a ``"quoted phrase"``, a prefix ``light*``, ``-word`` or
``-"a phrase"`` to exclude. User text never reaches SQL: it is cut into tokens (runs of letters
and digits, lower-cased, exactly as both indexes cut prompts) and every token is re-quoted, so
FTS5 operators (AND, OR, NEAR, ``^``, ``:``) and tsquery operators in the input are plain words.
The result is passed as a bound parameter. Pure: standard library only.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from sdfarm.errors import HistoryQueryError

_TOKEN = re.compile(r"[^\W_]+")

#: FTS5 column and PostgreSQL tsvector column of each searchable text (migration 0002_history).
COLUMNS: dict[str, tuple[str, str]] = {
    "prompt": ("prompt", "prompt_tsv"),
    "negative": ("negative_prompt", "negative_tsv"),
}


def tokens(text: str) -> list[str]:
    """How both indexes cut text into words."""
    return _TOKEN.findall(text.lower())


@dataclass(frozen=True)
class Term:
    #: One token is a word, more are a phrase (tokens next to each other, in order).
    words: tuple[str, ...]
    #: The last word is a prefix (``light*`` finds lighthouse and lighting).
    prefix: bool = False
    exclude: bool = False


@dataclass(frozen=True)
class TextQuery:
    terms: tuple[Term, ...]

    @property
    def include(self) -> tuple[Term, ...]:
        return tuple(t for t in self.terms if not t.exclude)

    @property
    def exclude(self) -> tuple[Term, ...]:
        return tuple(t for t in self.terms if t.exclude)


def parse_text_query(text: str, option: str = "--prompt") -> TextQuery:
    """Read the search syntax; an unbalanced quote runs to the end (people forget to close)."""
    terms: list[Term] = []
    i, n = 0, len(text)
    while i < n:
        if text[i].isspace():
            i += 1
            continue
        exclude = text[i] == "-" and i + 1 < n and not text[i + 1].isspace()
        if exclude:
            i += 1
        if text[i] == '"':
            end = text.find('"', i + 1)
            end = n if end < 0 else end
            raw, i = text[i + 1:end], end + 1
            prefix = raw.rstrip().endswith("*")
            if i < n and text[i] == "*":
                prefix, i = True, i + 1
        else:
            end = i
            while end < n and not text[end].isspace() and text[end] != '"':
                end += 1
            raw, i = text[i:end], end
            prefix = raw.endswith("*")
        words = tuple(tokens(raw))
        if words:
            terms.append(Term(words, prefix, exclude))
    if not terms:
        raise HistoryQueryError(f"{option} {text!r}: no words to search for (words are letters "
                                "and digits; use \"a phrase\", prefix*, -exclude)")
    return TextQuery(tuple(terms))


def _fts5_term(term: Term) -> str:
    phrase = '"' + " ".join(w.replace('"', '""') for w in term.words) + '"'
    return phrase + " *" if term.prefix else phrase


def fts5_match(queries: Mapping[str, TextQuery]) -> tuple[str | None, str | None]:
    """(what must match, what must not) as FTS5 MATCH strings, each ``None`` when empty.

    ``queries`` maps ``prompt``/``negative`` to a query. FTS5's NOT is binary, so a query with
    only exclusions has no MATCH of its own: the caller subtracts the second string's matches.
    """
    include: list[str] = []
    exclude: list[str] = []
    for name, query in queries.items():
        column = COLUMNS[name][0]
        if query.include:
            include.append(f"{{{column}}} : ({' AND '.join(map(_fts5_term, query.include))})")
        exclude += [f"{{{column}}} : ({_fts5_term(t)})" for t in query.exclude]
    if not include:
        return None, " OR ".join(exclude) or None
    match = " AND ".join(include)
    if exclude:
        match = f"({match})" + "".join(f" NOT ({e})" for e in exclude)
    return match, None


def _pg_lexeme(word: str, prefix: bool) -> str:
    quoted = "'" + word.replace("\\", "\\\\").replace("'", "''") + "'"
    return f"{quoted}:*" if prefix else quoted


def _pg_term(term: Term) -> str:
    last = len(term.words) - 1
    parts = [_pg_lexeme(w, term.prefix and k == last) for k, w in enumerate(term.words)]
    text = parts[0] if len(parts) == 1 else "(" + " <-> ".join(parts) + ")"
    return f"!{text}" if term.exclude else text


def pg_tsquery(query: TextQuery) -> str:
    """The ``to_tsquery('simple', ...)`` text of one query (one tsvector column)."""
    return " & ".join(_pg_term(t) for t in query.terms)
