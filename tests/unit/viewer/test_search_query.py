"""What people type into the search box, and the tsquery text it becomes."""

from __future__ import annotations

import pytest

from listener.viewer import search_query


@pytest.mark.parametrize(
    ("text", "tsquery"),
    [
        ("", ""),
        ("   ", ""),
        ("café", "('café')"),
        ("rope climbing", "('rope' & 'climbing')"),
        ('"70 m rope"', "(('70' <-> 'm' <-> 'rope'))"),
        ("quickd*", "('quickd':*)"),
        ("rope -quickdraws", "('rope' & !'quickdraws')"),
        ("-only", ""),
        ("a OR b c", "('a') | ('b' & 'c')"),
        ("OR", ""),
        ("don't", "('don''t')"),  # to_tsquery splits it as the index did
        ("e-mail", "(('e' <-> 'mail'))"),
        ("'); DROP TABLE messages; --", "('DROP' & 'TABLE' & 'messages')"),
        ("a & b | !c <-> d:*", "('a' & 'b' & 'c' & 'd':*)"),  # operators are only text
        ("\\'", ""),
        ('"unterminated phrase', "(('unterminated' <-> 'phrase'))"),
    ],
)
def test_parse(text: str, tsquery: str) -> None:
    assert search_query.parse(text).tsquery == tsquery


def test_input_is_bounded() -> None:
    query = search_query.parse(" ".join(f"w{i}" for i in range(1000)))
    assert len(query.terms) == search_query.MAX_TERMS
    assert len(search_query.parse("x" * 100_000).tsquery) < search_query.MAX_QUERY_CHARS + 10
