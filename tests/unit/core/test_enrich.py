"""listener.core.enrich: bridge row + Synapse event → archive record (source-schemas.md §2)."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from listener.core import enrich, errors, models

ROOM = "!portal:example.org"
EVENT_ROOM = "!event-room:example.org"
EVENT_ID = "$evt1:example.org"
SENDER = "@whatsapp_4915112345678:example.org"
CHAT = "120363012345678901@g.us"
TS_NS = 1_700_000_000_123_456_789
TS = datetime(2023, 11, 14, 22, 13, 20, 123456, tzinfo=UTC)


def _row(**overrides: Any) -> models.BridgeRow:
    values: dict[str, Any] = {
        "rowid": 42,
        "bridge_id": "",
        "message_id": f"{CHAT}:4915112345678@s.whatsapp.net:3EB0A1B2C3D4E5F6",
        "part_id": "",
        "mxid": EVENT_ID,
        "chat_id": CHAT,
        "room_receiver": "",
        "sender_id": "4915112345678",
        "sender_mxid": SENDER,
        "timestamp_ns": TS_NS,
        "thread_root_id": None,
        "reply_to_id": None,
        "reply_to_mxid": None,
        "thread_root_mxid": None,
        "metadata_json": None,
        "portal_mxid": ROOM,
        "portal_name": "Family",
        "room_type": None,
        "ghost_name": "Alice",
    }
    values.update(overrides)
    return models.BridgeRow(**values)


def _event(
    content: Any = None, *, event_type: str = "m.room.message", json_text: str | None = None
) -> models.SynapseEvent:
    if content is None:
        content = {"msgtype": "m.text", "body": "hello"}
    pdu = {
        "type": event_type,
        "room_id": EVENT_ROOM,
        "sender": SENDER,
        "origin_server_ts": 1_700_000_000_999,
        "content": content,
    }
    return models.SynapseEvent(
        event_id=EVENT_ID,
        room_id=EVENT_ROOM,
        event_type=event_type,
        sender=SENDER,
        origin_server_ts_ms=1_700_000_000_999,
        stream_ordering=7,
        json_text=json.dumps(pdu) if json_text is None else json_text,
        outlier=False,
        rejection_reason=None,
    )


# --- message_type --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event_type", "content", "expected"),
    [
        ("m.room.message", {"msgtype": "m.text", "body": "hi"}, "m.text"),
        (
            "m.room.message",
            {"msgtype": "m.image", "body": "cat.jpg", "url": "mxc://x/y"},
            "m.image",
        ),
        ("m.room.message", {"msgtype": "m.notice", "body": "n"}, "m.notice"),
        ("m.sticker", {"body": "sticker", "url": "mxc://x/s"}, "m.sticker"),
        ("m.room.encrypted", {"algorithm": "m.megolm.v1.aes-sha2"}, "m.room.encrypted"),
        ("m.room.message", {}, "m.room.message"),
        ("m.room.message", {"msgtype": ""}, "m.room.message"),
        ("m.room.message", {"msgtype": 7}, "m.room.message"),
        ("m.sticker", {"msgtype": "m.text"}, "m.sticker"),
    ],
)
def test_message_type__msgtype_for_room_messages_else_event_type(
    event_type: str, content: dict[str, Any], expected: str
) -> None:
    assert enrich.message_type(event_type, content) == expected


# --- relations -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("relates_to", "expected"),
    [
        pytest.param({"m.in_reply_to": {"event_id": "$orig"}}, ("$orig", None), id="reply"),
        pytest.param({"rel_type": "m.thread", "event_id": "$root"}, (None, "$root"), id="thread"),
        pytest.param(
            {"rel_type": "m.thread", "event_id": "$root", "m.in_reply_to": {"event_id": "$p"}},
            ("$p", "$root"),
            id="reply-in-thread",
        ),
        pytest.param(
            {"rel_type": "m.replace", "event_id": "$orig"}, (None, None), id="edit-not-thread"
        ),
        pytest.param(
            {"rel_type": "m.annotation", "event_id": "$t", "key": "👍"},
            (None, None),
            id="annotation",
        ),
        pytest.param("$orig", (None, None), id="relates-to-string"),
        pytest.param([{"m.in_reply_to": {"event_id": "$o"}}], (None, None), id="relates-to-list"),
        pytest.param({"m.in_reply_to": "$orig"}, (None, None), id="in-reply-to-string"),
        pytest.param({"m.in_reply_to": {"event_id": 5}}, (None, None), id="reply-id-not-str"),
        pytest.param({"m.in_reply_to": {}}, (None, None), id="reply-without-id"),
        pytest.param({"rel_type": "m.thread"}, (None, None), id="thread-without-id"),
        pytest.param({"rel_type": "m.thread", "event_id": None}, (None, None), id="thread-id-null"),
        pytest.param({}, (None, None), id="empty"),
    ],
)
def test_relations__reads_reply_and_thread_from_relates_to(
    relates_to: Any, expected: tuple[str | None, str | None]
) -> None:
    assert enrich.relations({"body": "x", "m.relates_to": relates_to}) == expected


def test_relations__no_relates_to_means_no_relations() -> None:
    assert enrich.relations({"msgtype": "m.text", "body": "x"}) == (None, None)


# --- display name --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ghost_name", "synapse_name", "expected"),
    [
        pytest.param("Alice", "alice (WA)", "Alice", id="ghost-wins"),
        pytest.param("Alice", None, "Alice", id="ghost-only"),
        pytest.param("", "alice (WA)", "alice (WA)", id="empty-ghost-falls-back"),
        pytest.param("   ", "alice (WA)", "alice (WA)", id="blank-ghost-falls-back"),
        pytest.param(None, "alice (WA)", "alice (WA)", id="no-ghost-falls-back"),
        pytest.param("", None, None, id="neither"),
        pytest.param("", "", None, id="both-empty"),
        pytest.param(" ", "\t", None, id="both-blank"),
        pytest.param(None, None, None, id="both-null"),
        pytest.param("Al\x00ice", None, "Al\ufffdice", id="nul-sanitised"),
    ],
)
def test_display_name__ghost_name_then_synapse_name_never_empty(
    ghost_name: str | None, synapse_name: str | None, expected: str | None
) -> None:
    assert enrich.display_name(_row(ghost_name=ghost_name), synapse_name) == expected


# --- timestamps ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("timestamp_ns", "expected"),
    [
        (TS_NS, TS),
        (1_700_000_000_000_000_000, datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)),
        (1_700_000_000_000_000_999, datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)),
        (1_700_000_000_999_999_999, datetime(2023, 11, 14, 22, 13, 20, 999999, tzinfo=UTC)),
        (0, datetime(1970, 1, 1, tzinfo=UTC)),
        (1_000, datetime(1970, 1, 1, 0, 0, 0, 1, tzinfo=UTC)),
    ],
)
def test_timestamp_from_ns__keeps_microseconds_in_utc(
    timestamp_ns: int, expected: datetime
) -> None:
    result = enrich.timestamp_from_ns(timestamp_ns)

    assert result == expected
    assert result.microsecond == expected.microsecond
    assert result.utcoffset() == timedelta(0)


def test_timestamp_from_ms__keeps_milliseconds_in_utc() -> None:
    result = enrich.timestamp_from_ms(1_700_000_000_999)

    assert result == datetime(2023, 11, 14, 22, 13, 20, 999000, tzinfo=UTC)
    assert result.utcoffset() == timedelta(0)


# --- enrich --------------------------------------------------------------------------------


def test_enrich__builds_record_from_row_and_event() -> None:
    record = enrich.enrich(_row(), _event(), "alice (WA)")

    assert record == models.ArchivedMessage(
        event_id=EVENT_ID,
        room_id=ROOM,
        room_name="Family",
        sender=SENDER,
        sender_display_name="Alice",
        timestamp=TS,
        message_type="m.text",
        content_json='{"msgtype":"m.text","body":"hello"}',
        content_raw=None,
        body="hello",
        whatsapp_message_id=f"{CHAT}:4915112345678@s.whatsapp.net:3EB0A1B2C3D4E5F6",
        whatsapp_chat_id=CHAT,
        whatsapp_sender_id="4915112345678",
        part_id="",
        bridge_id="",
        bridge_rowid=42,
        room_type=None,
        reply_to_event_id=None,
        thread_root_event_id=None,
        has_matrix_event=True,
        synapse_stream_ordering=7,
    )


@pytest.mark.parametrize(
    "body",
    [
        pytest.param("a\x00b", id="nul"),
        pytest.param("\x00", id="only-nul"),
        pytest.param("x\ud800y", id="lone-high-surrogate"),
        pytest.param("x\udc00y", id="lone-low-surrogate"),
    ],
)
def test_enrich__unsafe_body_is_sanitised_and_kept_raw(body: str) -> None:
    content = {"msgtype": "m.text", "body": body, "m.mentions": {}}

    record = enrich.enrich(_row(), _event(content), None)

    sanitised = (
        body.replace("\x00", "\ufffd").replace("\ud800", "\ufffd").replace("\udc00", "\ufffd")
    )
    assert record.body == sanitised
    assert record.content_json is not None
    assert json.loads(record.content_json) == {**content, "body": sanitised}
    assert "\\u0000" not in record.content_json
    assert record.content_raw is not None
    assert json.loads(record.content_raw) == content
    record.content_raw.encode("ascii")  # storable as-is in a text column


@pytest.mark.parametrize(
    "json_text",
    [
        pytest.param("{not json", id="invalid-json"),
        pytest.param("", id="empty"),
        pytest.param("[1, 2]", id="array"),
        pytest.param('"text"', id="string"),
        pytest.param("null", id="null"),
        pytest.param('{"type":"m.room.message","content":[1]}', id="content-list"),
        pytest.param('{"type":"m.room.message","content":"hi"}', id="content-string"),
        pytest.param('{"type":"m.room.message","content":null}', id="content-null"),
        pytest.param("[" * 100_000 + "]" * 100_000, id="too-deep"),
    ],
)
def test_enrich__unusable_event_json_raises_malformed_event(json_text: str) -> None:
    with pytest.raises(errors.MalformedEvent, match=r"^event \$evt1:example\.org: "):
        enrich.enrich(_row(), _event(json_text=json_text), None)


def test_enrich__event_without_content_gives_empty_content() -> None:
    record = enrich.enrich(_row(), _event(json_text='{"type":"m.room.message"}'), None)

    assert (record.content_json, record.body, record.message_type) == ("{}", None, "m.room.message")


def test_enrich__room_id_falls_back_to_event_room_without_portal() -> None:
    record = enrich.enrich(_row(portal_mxid=None, portal_name=None), _event(), None)

    assert record.room_id == EVENT_ROOM
    assert record.room_name is None


@pytest.mark.parametrize(
    ("content_relates_to", "bridge_reply", "bridge_thread", "expected"),
    [
        pytest.param(None, "$bridge-reply", None, ("$bridge-reply", None), id="bridge-reply"),
        pytest.param(None, None, "$bridge-root", (None, "$bridge-root"), id="bridge-thread"),
        pytest.param(
            {"m.in_reply_to": {"event_id": "$content-reply"}},
            "$bridge-reply",
            None,
            ("$content-reply", None),
            id="content-reply-wins",
        ),
        pytest.param(
            {"m.in_reply_to": "garbage"},
            "$bridge-reply",
            None,
            ("$bridge-reply", None),
            id="malformed-content-reply",
        ),
        pytest.param(None, None, None, (None, None), id="none"),
    ],
)
def test_enrich__relations_fall_back_to_bridge_resolved_mxids(
    content_relates_to: Any,
    bridge_reply: str | None,
    bridge_thread: str | None,
    expected: tuple[str | None, str | None],
) -> None:
    content: dict[str, Any] = {"msgtype": "m.text", "body": "re"}
    if content_relates_to is not None:
        content["m.relates_to"] = content_relates_to
    row = _row(reply_to_mxid=bridge_reply, thread_root_mxid=bridge_thread)

    record = enrich.enrich(row, _event(content), None)

    assert (record.reply_to_event_id, record.thread_root_event_id) == expected


@pytest.mark.parametrize(
    ("timestamp_ns", "expected"),
    [
        pytest.param(TS_NS, TS, id="bridge-ns"),
        pytest.param(0, datetime(2023, 11, 14, 22, 13, 20, 999000, tzinfo=UTC), id="event-ms"),
    ],
)
def test_enrich__timestamp_from_bridge_else_from_event(
    timestamp_ns: int, expected: datetime
) -> None:
    assert enrich.enrich(_row(timestamp_ns=timestamp_ns), _event(), None).timestamp == expected


@pytest.mark.parametrize(
    ("ghost_name", "synapse_name", "sender_mxid", "expected"),
    [
        pytest.param("", "alice (WA)", SENDER, ("alice (WA)", SENDER), id="empty-ghost"),
        pytest.param("", None, SENDER, (None, SENDER), id="no-name-at-all"),
        pytest.param("Bob", None, "", ("Bob", SENDER), id="sender-from-event"),
    ],
)
def test_enrich__sender_and_display_name(
    ghost_name: str, synapse_name: str | None, sender_mxid: str, expected: tuple[Any, Any]
) -> None:
    row = _row(ghost_name=ghost_name, sender_mxid=sender_mxid)

    record = enrich.enrich(row, _event(), synapse_name)

    assert (record.sender_display_name, record.sender) == expected


def test_enrich__non_string_body_is_none() -> None:
    record = enrich.enrich(_row(), _event({"msgtype": "m.text", "body": ["not", "text"]}), None)

    assert record.body is None
    assert record.content_json == '{"msgtype":"m.text","body":["not","text"]}'


# --- bridge-only and malformed records -------------------------------------------------------

FAKE_MXID = "~fake:q1w2e3r4t5y6u7i8o9p0"


def test_from_bridge_only__fake_row_has_no_matrix_event() -> None:
    row = _row(mxid=FAKE_MXID, reply_to_mxid="$r", thread_root_mxid="$t")

    record = enrich.from_bridge_only(row, "alice (WA)")

    assert record == models.ArchivedMessage(
        event_id=FAKE_MXID,
        room_id=ROOM,
        room_name="Family",
        sender=SENDER,
        sender_display_name="Alice",
        timestamp=TS,
        message_type=None,
        content_json=None,
        content_raw=None,
        body=None,
        whatsapp_message_id=row.message_id,
        whatsapp_chat_id=CHAT,
        whatsapp_sender_id="4915112345678",
        part_id="",
        bridge_id="",
        bridge_rowid=42,
        room_type=None,
        reply_to_event_id="$r",
        thread_root_event_id="$t",
        has_matrix_event=False,
    )


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        pytest.param({"portal_mxid": None}, {"room_id": None}, id="no-portal"),
        pytest.param({"portal_name": ""}, {"room_name": None}, id="empty-portal-name"),
        pytest.param({"sender_mxid": ""}, {"sender": None}, id="empty-sender"),
        pytest.param({"ghost_name": ""}, {"sender_display_name": None}, id="empty-ghost"),
    ],
)
def test_from_bridge_only__empty_bridge_values_become_none(
    overrides: dict[str, Any], expected: dict[str, Any]
) -> None:
    record = enrich.from_bridge_only(_row(mxid=FAKE_MXID, **overrides))

    assert {key: getattr(record, key) for key in expected} == expected


def test_from_malformed__keeps_bridge_data_and_raw_event_text() -> None:
    text = '{"type":"m.room.message","content":"oops"}'
    row = _row(portal_mxid=None)

    record = enrich.from_malformed(row, _event(json_text=text), "alice (WA)")

    assert record.content_raw == text
    assert record.content_json is None
    assert record.message_type == "m.room.message"
    assert record.room_id == EVENT_ROOM
    assert record.has_matrix_event is True
    assert record == dataclasses.replace(
        enrich.from_bridge_only(_row(portal_mxid=EVENT_ROOM)),
        content_raw=text,
        message_type="m.room.message",
    )


def test_relations__thread_fallback_reply_is_not_a_reply() -> None:
    content = {
        "m.relates_to": {
            "rel_type": "m.thread",
            "event_id": "$root",
            "is_falling_back": True,
            "m.in_reply_to": {"event_id": "$latest-in-thread"},
        }
    }
    assert enrich.relations(content) == (None, "$root")
