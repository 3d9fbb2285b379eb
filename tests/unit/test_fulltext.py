"""The history search syntax and its translation for FTS5 and tsquery (pure: no database)."""

from __future__ import annotations

import pytest

from sdfarm.db.fulltext import Term, fts5_match, parse_text_query, pg_tsquery, tokens
from sdfarm.errors import HistoryQueryError


def test_words_phrases_prefixes_and_exclusions_are_read_as_terms():
    q = parse_text_query('Light* "golden hour" -blurry -"low quality" sci-fi')
    assert q.terms == (
        Term(("light",), prefix=True), Term(("golden", "hour")), Term(("blurry",), exclude=True),
        Term(("low", "quality"), exclude=True), Term(("sci", "fi")),
    )


def test_an_unclosed_quote_runs_to_the_end_and_a_lone_dash_is_nothing():
    assert parse_text_query('"old lighthouse').terms == (Term(("old", "lighthouse")),)
    assert parse_text_query("cat - dog").terms == (Term(("cat",)), Term(("dog",)))
    with pytest.raises(HistoryQueryError, match="--prompt '- \\* \"\"': no words"):
        parse_text_query('- * ""')


def test_fts5_gets_only_quoted_tokens_with_a_column_filter():
    q = parse_text_query('NEAR(a b) OR "x" -y light*')
    include, exclude = fts5_match({"prompt": q})
    assert include == ('({prompt} : ("near a" AND "b" AND "or" AND "x" AND "light" *)) '
                       'NOT ({prompt} : ("y"))')
    assert exclude is None
    assert fts5_match({"negative": parse_text_query("-cat -dog")}) == (
        None, '{negative_prompt} : ("cat") OR {negative_prompt} : ("dog")')


def test_tsquery_text_quotes_every_lexeme():
    q = parse_text_query('it\'s "old light*" -dog & !cat')
    assert pg_tsquery(q) == "('it' <-> 's') & ('old' <-> 'light':*) & !'dog' & 'cat'"


def test_tokens_are_runs_of_letters_and_digits_lowercased():
    assert tokens("(Masterpiece:1.2), best_quality, café, 8k, <lora:x:0.6>") == [
        "masterpiece", "1", "2", "best", "quality", "café", "8k", "lora", "x", "0", "6"]
