"""ARG/ENV expansion and Docker's quoting rules."""

from __future__ import annotations

import pytest

from peapod.build.words import WordError, expand_word, expand_words, key_value_pairs

ENV = {"A": "apple", "EMPTY": "", "P": "/srv/app"}


@pytest.mark.parametrize(("text", "want"), [
    ("$A", "apple"),
    ("${A}pie", "applepie"),
    ("$A-$B.", "apple-."),
    ("${B:-dflt}", "dflt"),
    ("${EMPTY:-dflt}", "dflt"),
    ("${EMPTY-dflt}", ""),
    ("${A:+set}", "set"),
    ("${B:+set}", ""),
    ("${B:-$A}", "apple"),
    ("'$A'", "$A"),
    ('"$A b"', "apple b"),
    ('"\\$A"', "$A"),
    ("\\$A", "$A"),
    ("$", "$"),
    ("a$1", "a$1"),
    ("$P/sub", "/srv/app/sub"),
])
def test_expand_word(text: str, want: str) -> None:
    assert expand_word(text, ENV) == want


def test_expand_words_splits_on_unquoted_space() -> None:
    assert expand_words('a=$A b="x y" c=z\\ w  d=\'$A\'', ENV) == ["a=apple", "b=x y", "c=z w", "d=$A"]
    assert expand_words('"" x', ENV) == ["", "x"]


def test_backtick_escape() -> None:
    assert expand_word("`$A", ENV, escape="`") == "$A"
    assert expand_word("c:\\dir", ENV, escape="`") == "c:\\dir"


def test_errors() -> None:
    with pytest.raises(WordError, match="double-quote"):
        expand_word('"open', ENV)
    with pytest.raises(WordError, match="single-quote"):
        expand_word("'open", ENV)
    with pytest.raises(WordError, match="must be set"):
        expand_word("${B:?must be set}", ENV)
    with pytest.raises(WordError, match="missing"):
        expand_word("${A:-x", ENV)


def test_key_value_pairs() -> None:
    assert key_value_pairs(["a=1", "b=", "c=x=y"]) == [("a", "1"), ("b", ""), ("c", "x=y")]
    with pytest.raises(WordError):
        key_value_pairs(["novalue"])
