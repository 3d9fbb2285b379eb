"""A1111's prompt syntax: the parser gives A1111's own documented results, and long prompts
are cut into chunks where A1111 cuts them (comma backtrack, BREAK)."""

from __future__ import annotations

import pytest

from sdfarm.scheduler.emphasis import (
    COMMA_BACKTRACK,
    Fragment,
    PromptSyntaxError,
    SpecialTokens,
    chunk_tokens,
    empty_chunk,
    has_syntax,
    parse_attention,
)


def pairs(text: str) -> list[list]:
    return [[f.text, f.weight] for f in parse_attention(text)]


# The examples of the docstring of A1111's parse_prompt_attention (modules/prompt_parser.py),
# with its exact float results.
A1111_DOCSTRING = [
    ("normal text", [["normal text", 1.0]]),
    ("an (important) word", [["an ", 1.0], ["important", 1.1], [" word", 1.0]]),
    ("(unbalanced", [["unbalanced", 1.1]]),
    ("\\(literal\\]", [["(literal]", 1.0]]),
    ("(unnecessary)(parens)", [["unnecessaryparens", 1.1]]),
    ("a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).",
     [["a ", 1.0], ["house", 1.5730000000000004], [" ", 1.1], ["on", 1.0], [" a ", 1.1],
      ["hill", 0.55], [", sun, ", 1.1], ["sky", 1.4641000000000006], [".", 1.1]]),
]


@pytest.mark.parametrize(("text", "expected"), A1111_DOCSTRING)
def test_the_parser_gives_a1111s_documented_results(text, expected):
    assert pairs(text) == expected


def test_square_brackets_divide_weights_and_escapes_keep_brackets_literal():
    assert pairs("[cat]") == [["cat", 1 / 1.1]]
    assert pairs("[[cat]]") == [["cat", 1 / 1.1 / 1.1]]
    assert pairs("a \\(b\\) \\\\ c") == [["a (b) \\ c", 1.0]]
    # a weight may have spaces around it (A1111 1.7+), a closing bracket alone is text
    assert pairs("(cat: 1.3 ) dog)") == [["cat", 1.3], [" dog)", 1.0]]
    assert pairs("(cat:0)") == [["cat", 0.0]]


def test_break_is_a_marker_and_equal_weights_merge():
    assert pairs("a cat BREAK a dog") == [["a cat", 1.0], ["BREAK", -1.0], ["a dog", 1.0]]
    assert parse_attention("a BREAK b")[1].is_break
    # "BREAK" must be upper case and a word of its own
    assert pairs("a break b BREAKING") == [["a break b BREAKING", 1.0]]
    # (a:1.0) is the same weight as the text around it: one fragment, as A1111 merges them
    assert pairs("x (a:1.0) y") == [["x a y", 1.0]]
    assert pairs("") == [["", 1.0]]


def test_a_weight_that_is_no_number_is_a_clear_error():
    with pytest.raises(PromptSyntaxError, match="'1.2.3'"):
        parse_attention("(cat:1.2.3)")


def test_has_syntax_is_false_for_plain_prompts_and_equal_weights():
    assert not has_syntax("a photo of a cat, 35mm: sharp")
    assert has_syntax("a (cat)")
    assert has_syntax("a \\(cat\\)")  # the escapes change the text
    assert has_syntax("a BREAK b")
    assert has_syntax("(a:1.0)")  # weight 1, but the brackets leave the text
    assert not has_syntax("a BREAKING b")


# --- chunks ------------------------------------------------------------------------------

START, END, PAD, COMMA = 1000, 1001, 1002, 0
SPECIAL = SpecialTokens(START, END, PAD, COMMA)


def words(n: int, first: int = 1) -> list[int]:
    return list(range(first, first + n))


def chunk(ids: list[int], weights: list[float] | None = None):
    fragment = Fragment("x", 1.0)
    if weights is None:
        return chunk_tokens([fragment], [ids], SPECIAL)
    # one fragment per token, to carry a weight each
    return chunk_tokens([Fragment("x", w) for w in weights], [[i] for i in ids], SPECIAL)


def bodies(result) -> list[list[int]]:
    out = []
    for c in result.chunks:
        assert len(c.tokens) == 77 and c.tokens[0] == START
        out.append(list(c.tokens[1:1 + c.used]))
        assert c.tokens[1 + c.used] == END
        assert set(c.tokens[2 + c.used:]) <= {PAD}
    return out


def test_up_to_75_tokens_is_one_chunk_padded_after_its_end_token():
    result = chunk(words(75))
    assert bodies(result) == [words(75)]
    short = chunk(words(3))
    assert short.chunks[0].tokens == (START, 1, 2, 3, END, *[PAD] * 72)
    assert short.tokens == 3


def test_a_76th_token_without_a_comma_near_starts_a_second_chunk():
    assert bodies(chunk(words(76))) == [words(75), [76]]
    assert chunk(words(150)).tokens == 150
    assert bodies(chunk(words(151))) == [words(75), words(75, 76), [151]]


def test_a_full_chunk_is_cut_back_to_a_comma_within_20_tokens():
    # a comma at body position 60: 75 - 60 = 15 <= 20, so the 14 words after it move on
    ids = words(60) + [COMMA] + words(30, 100)
    first, second = bodies(chunk(ids))
    assert first == words(60) + [COMMA]
    assert second == words(30, 100)
    # exactly 20 back still moves; 21 back does not
    edge = 75 - COMMA_BACKTRACK
    assert bodies(chunk(words(edge) + [COMMA] + words(30, 100)))[0] == words(edge) + [COMMA]
    far = words(edge - 1) + [COMMA] + words(30, 100)
    assert bodies(chunk(far))[0] == far[:75]


def test_a_comma_that_lands_on_a_full_chunk_starts_the_next_one_and_is_forgotten():
    # A1111: the comma itself opens chunk 2, and its position is reset by the new chunk, so
    # chunk 2 fills to 75 with no backtrack even though a comma is at its start
    ids = words(75) + [COMMA] + words(80, 100)
    first, second, third = bodies(chunk(ids))
    assert first == words(75)
    assert second == [COMMA] + words(74, 100)
    assert third == words(6, 174)


def test_moved_words_keep_their_weights():
    ids = words(70) + [COMMA] + words(10, 100)
    weights = [1.0] * 71 + [1.5] * 10
    result = chunk(ids, weights)
    assert result.chunks[1].weights[1:11] == (1.5,) * 10
    assert result.chunks[0].weights[72:] == (1.0,) * 5  # padding weighs 1


def test_break_closes_a_chunk_even_an_empty_one():
    fragments = parse_attention("a BREAK b")
    result = chunk_tokens(fragments, [[1], [], [2]], SPECIAL)
    assert bodies(result) == [[1], [2]]
    leading = chunk_tokens(parse_attention("BREAK b"), [[], [], [2]], SPECIAL)
    assert bodies(leading) == [[], [2]]  # as in A1111: an empty first chunk


def test_the_empty_prompt_is_one_chunk_of_padding():
    assert empty_chunk(SPECIAL).tokens == (START, END, *[PAD] * 75)
    assert empty_chunk(SPECIAL).plain


def test_a_multi_vector_embedding_is_never_split_across_chunks():
    # An embedding of 4 vectors (ids 500-503) that would straddle the 75th token moves to the
    # next chunk whole, as A1111 moves it; elsewhere it is tokens like any other.
    special = SpecialTokens(START, END, PAD, COMMA, {500: (500, 501, 502, 503)})
    ids = words(73) + [500, 501, 502, 503] + words(2, 100)
    result = chunk_tokens([Fragment("x", 1.0)], [ids], special)
    assert bodies(result) == [words(73), [500, 501, 502, 503] + words(2, 100)]
    # the same ids without the embedding registered are cut at 75
    assert bodies(chunk(ids))[0] == words(73) + [500, 501]
    # a run that is not the whole embedding (its first token alone) is one token
    assert bodies(chunk_tokens([Fragment("x", 1.0)], [words(3) + [500]], special)) == [
        words(3) + [500]]
