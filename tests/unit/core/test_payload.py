"""listener.core.payload: the NOTIFY payload contract of docs/ARCHITECTURE.md."""

from __future__ import annotations

import json

import pytest

from listener.core import errors, payload


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            '{"v":1,"table":"message","op":"INSERT","ranges":[[5,5]]}',
            payload.Notification(op="INSERT", table="message", ranges=((5, 5),)),
        ),
        (
            '{"v":1,"table":"message","op":"UPDATE","ranges":[[1,3],[7,7],[9,12]]}',
            payload.Notification(op="UPDATE", table="message", ranges=((1, 3), (7, 7), (9, 12))),
        ),
        (
            '{"ranges": [[0, 0], [1, 1]], "op": "DELETE", "table": "message", "v": 1}',
            payload.Notification(op="DELETE", table="message", ranges=((0, 0), (1, 1))),
        ),
        (
            '{"v":1,"table":"reaction","op":"DELETE","ranges":[]}',
            payload.Notification(op="DELETE", table="reaction", ranges=()),
        ),
        (
            '{"v":1,"table":"message","op":"INSERT","ranges":[[1,9223372036854775807]]}',
            payload.Notification(op="INSERT", table="message", ranges=((1, 2**63 - 1),)),
        ),
    ],
)
def test_parse_notification__accepts_trigger_payloads(
    text: str, expected: payload.Notification
) -> None:
    assert payload.parse_notification(text) == expected


def _doc(**overrides: object) -> str:
    document: dict[str, object] = {"v": 1, "table": "message", "op": "INSERT", "ranges": [[1, 2]]}
    document.update(overrides)
    return json.dumps(document, separators=(",", ":"))


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("", id="empty"),
        pytest.param("not json", id="not-json"),
        pytest.param("[1,2]", id="array"),
        pytest.param('"text"', id="string"),
        pytest.param("null", id="null"),
        pytest.param('{"v":1,"table":"message","op":"INSERT"}', id="missing-ranges"),
        pytest.param(_doc(extra=1), id="unknown-key"),
        pytest.param(
            '{"v":1,"v":1,"table":"message","op":"INSERT","ranges":[[1,2]]}', id="duplicate-key"
        ),
        pytest.param(_doc(v=2), id="version-2"),
        pytest.param(_doc(v="1"), id="version-string"),
        pytest.param(_doc(v=True), id="version-bool"),
        pytest.param(_doc(v=1.0), id="version-float"),
        pytest.param(_doc(op="insert"), id="op-lowercase"),
        pytest.param(_doc(op="TRUNCATE"), id="op-unknown"),
        pytest.param(_doc(op=None), id="op-null"),
        pytest.param(_doc(table=""), id="table-empty"),
        pytest.param(_doc(table=7), id="table-int"),
        pytest.param(_doc(table="t" * 64), id="table-too-long"),
        pytest.param(_doc(ranges={"1": 2}), id="ranges-object"),
        pytest.param(_doc(ranges=[1, 2]), id="ranges-flat"),
        pytest.param(_doc(ranges=[[1]]), id="range-short"),
        pytest.param(_doc(ranges=[[1, 2, 3]]), id="range-long"),
        pytest.param(_doc(ranges=[[3, 2]]), id="lo-above-hi"),
        pytest.param(_doc(ranges=[[-1, 2]]), id="negative"),
        pytest.param(_doc(ranges=[[1, 2**63]]), id="beyond-bigint"),
        pytest.param(_doc(ranges=[[1.0, 2]]), id="float"),
        pytest.param(_doc(ranges=[["1", 2]]), id="string-rowid"),
        pytest.param(_doc(ranges=[[True, 2]]), id="bool-rowid"),
        pytest.param(_doc(ranges=[[None, 2]]), id="null-rowid"),
        pytest.param(_doc(ranges=[[5, 6], [1, 2]]), id="descending"),
        pytest.param(_doc(ranges=[[1, 5], [5, 6]]), id="overlapping"),
        pytest.param(
            _doc(ranges=[[0, 0]] * (payload.MAX_RANGES + 1)),  # short enough to reach the count
            id="too-many-ranges",
        ),
        pytest.param(
            '{"v":1,"table":"message","op":"INSERT","ranges":[[NaN,1]]}', id="nan-constant"
        ),
        pytest.param("[" * 5000 + "]" * 5000, id="deep-nesting"),
        pytest.param(_doc(table="x" * 8000), id="too-long-for-notify"),
    ],
)
def test_parse_notification__rejects_what_is_not_ours(text: str) -> None:
    with pytest.raises(errors.PayloadError):
        payload.parse_notification(text)


def test_parse_notification__rejects_non_str() -> None:
    with pytest.raises(errors.PayloadError):
        payload.parse_notification(b'{"v":1}')  # type: ignore[arg-type]


def test_parse_notification__accepts_the_longest_payload_the_trigger_sends() -> None:
    ranges: list[list[int]] = []
    while len(_doc(ranges=[*ranges, [2 * len(ranges), 2 * len(ranges)]])) <= 7900:
        ranges.append([2 * len(ranges), 2 * len(ranges)])
    parsed = payload.parse_notification(_doc(ranges=ranges))
    assert len(parsed.ranges) == len(ranges) > 500


def test_payload_error__is_an_archiver_error_with_a_default_message() -> None:
    with pytest.raises(errors.ArchiverError, match="version"):
        payload.parse_notification(_doc(v=9))
    assert str(errors.PayloadError()) == "A NOTIFY payload on our channel is not one of ours."


@pytest.mark.parametrize(
    ("ranges", "count"),
    [
        ((), 0),
        (((5, 5),), 1),
        (((1, 3), (7, 7), (10, 19)), 14),
        (((0, 2**63 - 1),), 2**63),
    ],
)
def test_rowid_count__counts_inclusive_ranges(
    ranges: tuple[tuple[int, int], ...], count: int
) -> None:
    assert payload.rowid_count(ranges) == count
    if ranges:
        assert payload.Notification("INSERT", "message", ranges).rowid_count == count
