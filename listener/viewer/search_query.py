"""What a person types into the search box, as PostgreSQL ``tsquery`` text. Pure.

The syntax people know from web search engines, plus prefixes:
``word`` (all words must match), ``"a phrase"`` (words next to each other, in order), ``pref*``
(any word starting so), ``-word`` (must not contain), ``a OR b``. Every term is quoted as a
tsquery literal, so nothing typed can inject tsquery operators: ``to_tsquery`` then folds case
and accents with the same configuration as the index (``archive_search``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_QUERY_CHARS = 500
MAX_TERMS = 32
# A quoted phrase, or a run of characters up to a space or a quote.
_TOKEN = re.compile(r'(-?)"([^"]*)"?|(\S+)')
_WORD_CHARS = re.compile(r"[^\W_]+(?:['’][^\W_]+)*", re.UNICODE)


@dataclass(frozen=True, slots=True)
class Query:
    tsquery: str  # '' when nothing searchable was typed
    terms: tuple[str, ...]  # the words, for the page to say what was searched


def _literal(word: str, *, prefix: bool = False) -> str:
    return "'" + word.replace("'", "''").replace("\\", "\\\\") + "'" + (":*" if prefix else "")


def _words(text: str) -> list[str]:
    return _WORD_CHARS.findall(text)


def parse(text: str) -> Query:
    """The tsquery for ``text`` (bounded: the first MAX_QUERY_CHARS characters and MAX_TERMS
    terms count)."""
    groups: list[list[str]] = [[]]  # OR of ANDs
    terms: list[str] = []
    for match in _TOKEN.finditer(text[:MAX_QUERY_CHARS]):
        if len(terms) >= MAX_TERMS:
            break
        negate, phrase, bare = match.group(1), match.group(2), match.group(3)
        if bare is not None and bare == "OR":
            if groups[-1]:
                groups.append([])
            continue
        if bare is not None:
            negate = "-" if bare.startswith("-") and len(bare) > 1 else ""
            word_text = bare[1:] if negate else bare
            prefix = word_text.endswith("*")
            words = _words(word_text)
            if not words:
                continue
            if len(words) == 1:
                clause = _literal(words[0], prefix=prefix)
            else:  # "e-mail", "don't": the words in order, as the index saw them
                clause = "(" + " <-> ".join(_literal(w) for w in words) + ")"
        else:
            words = _words(phrase or "")
            if not words:
                continue
            clause = "(" + " <-> ".join(_literal(w) for w in words) + ")"
        terms.extend(words)
        groups[-1].append(("!" if negate else "") + clause)
    ands = [" & ".join(group) for group in groups if group and _has_positive(group)]
    return Query(" | ".join(f"({a})" for a in ands), tuple(terms))


def _has_positive(group: list[str]) -> bool:
    # A group of only negations would match almost every message: not a search.
    return any(not clause.startswith("!") for clause in group)
