"""The JSON export's schema, version 1 (documented in docs/EXPORT.md). Pure.

Stable: fields are only ever added. Times are ISO 8601 in UTC. ``content`` is the event's
content as archived (what the message says now) and ``original_content`` what it said first;
what a chat member wrote is data here, never markup.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from listener.viewer import views

SCHEMA_PAGE = "archiver-db/export-page/1"
SCHEMA_CHAT = "archiver-db/export-chat/1"
SCHEMA_EXPORT = "archiver-db/export/1"


def _time(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value else None


def message(
    row: Mapping[str, Any],
    *,
    reactions: Iterable[Mapping[str, Any]],
    edits: Iterable[Mapping[str, Any]],
    media: Iterable[tuple[Mapping[str, Any], str | None]],
) -> dict[str, Any]:
    content = row["content"] if isinstance(row["content"], Mapping) else {}
    return {
        "event_id": row["event_id"],
        "room_id": row["room_id"],
        "timestamp": _time(row["timestamp"]),
        "sender": {
            "mxid": row["sender"],
            "name": views.display_name(row["sender"], row["sender_display_name"]),
        },
        "kind": views.kind_of(row["message_type"], content),
        "message_type": row["message_type"],
        "body": row["body"],
        "content": content,
        "reply_to": row["reply_to_event_id"],
        "thread_root": row["thread_root_event_id"],
        "edited": (
            {
                "count": row["edit_count"],
                "last_at": _time(row["edited_at"]),
                "original_content": row["original_content"],
                "edits": [
                    {
                        "number": e["edit_number"],
                        "at": _time(e["edited_at"]),
                        "sender": e["sender"],
                        "body": e["body"],
                        "new_content": e["new_content"],
                    }
                    for e in edits
                ],
            }
            if row["edit_count"]
            else None
        ),
        "deleted": (
            {"at": _time(row["deleted_at"]), "redaction_event_id": row["redaction_event_id"]}
            if row["deleted_at"]
            else None
        ),
        "reactions": [
            {
                "key": r["emoji"],
                "sender": r["sender"],
                "at": _time(r["timestamp"]),
                "removed_at": _time(r["removed_at"]),
            }
            for r in reactions
        ],
        "media": [
            {
                "media_id": m["id"],
                "kind": m["kind"],
                "filename": m["original_filename"],
                "mimetype": m["mimetype"],
                "size_bytes": m["size_bytes"],
                "sha256": m["sha256"],
                "width": m["width"],
                "height": m["height"],
                "duration_ms": m["duration_ms"],
                "status": m["status"],
                "file": path,
            }
            for m, path in media
        ],
        "network": {
            "message_id": row["whatsapp_message_id"],
            "chat_id": row["whatsapp_chat_id"],
            "sender_id": row["whatsapp_sender_id"],
        },
        "from_matrix": row["has_matrix_event"],
    }


def room(room: Any) -> dict[str, Any]:
    return {
        "room_id": room.room_id,
        "name": room.name,
        "type": room.room_type or "group",
        "network": room.network,
        "message_count": room.message_count,
        "first_message": _time(room.first_message),
        "last_message": _time(room.last_message),
    }
