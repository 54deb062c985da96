"""Rows to what the page shows."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from listener.viewer import views


@pytest.mark.parametrize(
    ("name", "expected"),
    [("Mia B.", "MB"), ("mia", "M"), ("  ", " "), ("@bob:example.org", "@"),
     ("Ana María López", "AM"), ("😀 Party", "P"), ("", "?")],
)  # fmt: skip
def test_initials(name: str, expected: str) -> None:
    assert views.initials(name) == expected


def test_anchor_is_stable_and_safe() -> None:
    a = views.anchor('$abc"><script>')
    assert a == views.anchor('$abc"><script>')
    assert a.startswith("m-")
    assert a[2:].isalnum()


@pytest.mark.parametrize(
    ("message_type", "content", "kind"),
    [
        ("m.text", {}, "text"),
        ("m.image", {}, "image"),
        ("m.audio", {}, "audio"),
        ("m.sticker", {}, "sticker"),
        ("m.room.encrypted", {"algorithm": "m.megolm.v1.aes-sha2"}, "encrypted"),
        ("m.room.message", {"msgtype": "m.emote"}, "emote"),
        ("m.room.message", {"msgtype": "com.example.custom"}, "text"),
        (None, {}, "text"),
        ("m.call.invite", {}, "event"),
    ],
)
def test_kind_of(message_type: str | None, content: dict[str, Any], kind: str) -> None:
    assert views.kind_of(message_type, content) == kind


@pytest.mark.parametrize(
    ("size", "label"), [(None, ""), (0, "0 B"), (1023, "1023 B"), (1536, "1.5 KB"),
                        (5 * 1024**3, "5.0 GB"), (10 * 1024**4, "10240.0 GB")],
)  # fmt: skip
def test_size_label(size: int | None, label: str) -> None:
    assert views.size_label(size) == label


def test_only_harmless_types_are_inline() -> None:
    assert views.inline_type("image/png")
    assert views.inline_type("Audio/Ogg; codecs=opus")
    for hostile in ("image/svg+xml", "text/html", "application/xhtml+xml", "", None,
                    "application/pdf", "text/javascript"):  # fmt: skip
        assert not views.inline_type(hostile)


def test_search_excerpts_are_escaped_around_the_hits() -> None:
    marked = views.mark_excerpt("<b>x</b> \x02café\x03 and \x02<i>\x03 end")
    assert str(marked) == "&lt;b&gt;x&lt;/b&gt; <mark>café</mark> and <mark>&lt;i&gt;</mark> end"
    assert str(views.mark_excerpt(None)) == ""


def _row(**over: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "event_id": "$e1",
        "room_id": "!r",
        "sender": "@whatsapp_123:example.org",
        "sender_display_name": None,
        "timestamp": datetime(2024, 5, 1, 9, 30, tzinfo=UTC),
        "message_type": "m.image",
        "content": {"msgtype": "m.image", "body": "nice view", "filename": "IMG.jpg",
                    "url": "mxc://example.org/new"},
        "reply_to_event_id": None,
        "thread_root_event_id": None,
        "edit_count": 0,
        "original_content": None,
        "deleted_at": None,
        "has_matrix_event": True,
    }  # fmt: skip
    row.update(over)
    return row


def _media(media_id: int, mxc: str, kind: str = "image", status: str = "stored") -> dict[str, Any]:
    return {
        "id": media_id, "event_id": "$e1", "mxc_url": mxc, "kind": kind,
        "original_filename": "IMG.jpg", "mimetype": "image/jpeg", "size_bytes": 2048,
        "width": 4, "height": 3, "duration_ms": None, "status": status,
    }  # fmt: skip


def test_a_page_gets_its_media_reactions_edits_and_replies() -> None:
    rows = [
        _row(reply_to_event_id="$gone", edit_count=1, deleted_at=datetime(2024, 5, 2, tzinfo=UTC))
    ]
    media = [_media(1, "mxc://example.org/old"), _media(2, "mxc://example.org/new"),
             _media(3, "mxc://example.org/thumb", kind="thumbnail")]  # fmt: skip
    reactions = [
        {"message_event_id": "$e1", "emoji": "👍", "count": 2, "senders": ["@a:x", "@b:x"]}
    ]
    edits = [{"message_event_id": "$e1", "edit_number": 1, "body": "<b>hi</b>", "new_content": None,
              "edited_at": datetime(2024, 5, 1, 10, tzinfo=UTC), "sender": "@a:x"}]  # fmt: skip
    [view] = views.assemble(
        rows, zone=UTC, reply_targets={}, reactions=reactions, edits=edits, media=media
    )
    assert [m.media_id for m in view.media] == [2]  # the edit's media, not the replaced one
    assert view.media[0].inline
    assert view.sender_name == "whatsapp_123"
    assert view.body == "nice view"  # a caption: body differs from the file name
    assert view.reactions[0].count == 2
    assert view.reactions[0].senders == "a, b"
    assert str(view.edits[0].body) == "&lt;b&gt;hi&lt;/b&gt;"
    assert view.reply is not None
    assert not view.reply.found
    assert view.deleted
    assert (view.day, view.time) == ("Wednesday, 01 May 2024", "09:30")


def test_media_not_stored_is_never_inline() -> None:
    [view] = views.assemble(
        [_row()], zone=UTC, reply_targets={}, reactions=[], edits=[],
        media=[_media(2, "mxc://example.org/new", status="missing")],
    )  # fmt: skip
    assert not view.media[0].stored
    assert not view.media[0].inline
