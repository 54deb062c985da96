"""listener.core.textsafe: NUL and lone surrogates made storable in PostgreSQL, losslessly."""

from __future__ import annotations

import json
from typing import Any

import pytest

from listener.core import textsafe

R = "\ufffd"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("plain", "plain", id="clean"),
        pytest.param("", "", id="empty"),
        pytest.param("a\x00b", f"a{R}b", id="nul"),
        pytest.param("\x00\x00", R * 2, id="two-nuls"),
        pytest.param("x\ud83dy", f"x{R}y", id="lone-high-surrogate"),
        pytest.param("x\ude00y", f"x{R}y", id="lone-low-surrogate"),
        pytest.param("\udfff\ud800", R * 2, id="surrogate-range-ends"),
        pytest.param("😀 über €", "😀 über €", id="non-bmp-and-accents-kept"),
        pytest.param("tab\tnew\nline\x01", "tab\tnew\nline\x01", id="other-controls-kept"),
    ],
)
def test_safe_text__replaces_nul_and_lone_surrogates(value: str, expected: str) -> None:
    assert textsafe.safe_text(value) == expected
    assert textsafe.needs_sanitising(value) is (value != expected)


def test_safe_text__result_is_utf8_encodable() -> None:
    assert textsafe.safe_text("a\ud800b\x00").encode("utf-8") == "a\ufffdb\ufffd".encode()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param({"body": "a\x00b"}, {"body": f"a{R}b"}, id="nul-value"),
        pytest.param({"k\x00": 1}, {f"k{R}": 1}, id="nul-in-key"),
        pytest.param({"\ud800": "\udc00"}, {R: R}, id="surrogate-key-and-value"),
        pytest.param(
            {"a": [1, "x\x00", ["y\ud800", {"z\x00": None}]]},
            {"a": [1, f"x{R}", [f"y{R}", {f"z{R}": None}]]},
            id="nested-lists",
        ),
        pytest.param(["\x00", 2, True, None, 1.5], [R, 2, True, None, 1.5], id="top-level-list"),
        pytest.param("\x00", R, id="top-level-string"),
    ],
)
def test_sanitise_json__replaces_unsafe_code_points_everywhere(value: Any, expected: Any) -> None:
    assert textsafe.sanitise_json(value) == (expected, True)


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(
            {"msgtype": "m.text", "body": "hi 😀", "n": [1, 2.5, None, True]}, id="object"
        ),
        pytest.param([], id="empty-list"),
        pytest.param({}, id="empty-object"),
        pytest.param(17, id="int"),
        pytest.param(None, id="null"),
    ],
)
def test_sanitise_json__clean_value_is_unchanged(value: Any) -> None:
    assert textsafe.sanitise_json(value) == (value, False)


def test_sanitise_json__does_not_mutate_input() -> None:
    value = {"a": ["\x00"], "b\x00": "c"}
    snapshot = json.loads(json.dumps(value))

    textsafe.sanitise_json(value)

    assert value == snapshot


@pytest.mark.parametrize(
    ("value", "expected_json"),
    [
        ({"body": "a\x00b"}, '{"body":"a\ufffdb"}'),
        ({"k\x00": ["\ud800"]}, '{"k\ufffd":["\ufffd"]}'),
    ],
)
def test_storable_json__unsafe_object_gets_sanitised_json_and_exact_raw(
    value: Any, expected_json: str
) -> None:
    safe, raw = textsafe.storable_json(value)

    assert safe == expected_json
    assert raw is not None
    assert json.loads(raw) == value
    raw.encode("ascii")  # escaped: PostgreSQL text accepts it as-is
    assert "\x00" not in raw


def test_storable_json__clean_object_has_no_raw_and_keeps_utf8() -> None:
    value = {"msgtype": "m.text", "body": "über 😀", "m.mentions": {"user_ids": []}}

    safe, raw = textsafe.storable_json(value)

    assert raw is None
    assert safe == '{"msgtype":"m.text","body":"über 😀","m.mentions":{"user_ids":[]}}'
    assert json.loads(safe) == value


def test_storable_json__keys_colliding_after_sanitising_survive_in_raw() -> None:
    value = {"a\x00": 1, "a\ud800": 2}

    safe, raw = textsafe.storable_json(value)

    assert json.loads(safe) == {f"a{R}": 2}
    assert raw is not None
    assert json.loads(raw) == value
