"""Archive records as PostgREST JSON rows, and how to cut them into requests (pure).

PostgREST fills a table from a JSON array: a ``jsonb`` column takes the JSON value as it is, so
the event content goes over as an object (parsed from ``content_json``), never as a string (that
would store a JSON string). Timestamps go as ISO 8601 with their offset.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import Any

from listener.core import archive_rows, models
from listener.sinks import media_protocol

Row = dict[str, Any]

# Each table's natural key: PostgREST's ``on_conflict`` (a unique constraint of the archive schema).
MESSAGES_KEY = "event_id"
EDITS_KEY = "edit_event_id"
REACTIONS_KEY = "reaction_event_id"
FAILURES_KEY = "kind,subject"
ROOMS_KEY = "room_id"
STATE_KEY = "name"
MEDIA_KEY = "event_id,mxc_url"
JOBS_KEY = "media_id,job_type"


def _json(text: str | None) -> Any:
    return json.loads(text) if text is not None else None


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def message_row(m: models.ArchivedMessage) -> Row:
    return {
        **archive_rows.message_scalars(m),
        "content": _json(m.content_json),
        "original_content": _json(m.original_content_json),
        "encrypted_content": _json(m.encrypted_content_json),
    }


def edit_row(e: models.ArchivedEdit) -> Row:
    return {
        "edit_event_id": e.edit_event_id,
        "message_event_id": e.message_event_id,
        "edit_number": e.edit_number,
        "sender": e.sender,
        "new_content": _json(e.new_content_json),
        "content_raw": e.content_raw,
        "body": e.body,
        "edited_at": _time(e.edited_at),
    }


def reaction_row(r: models.ArchivedReaction) -> Row:
    return {
        "reaction_event_id": r.reaction_event_id,
        "message_event_id": r.message_event_id,
        "room_id": r.room_id,
        "sender": r.sender,
        "emoji": r.emoji,
        "timestamp": _time(r.timestamp),
        "removed_at": _time(r.removed_at),
        "redaction_event_id": r.redaction_event_id,
    }


def failure_row(f: models.Failure, *, attempts: int, now: datetime) -> Row:
    """A (re-)recorded failure: reopened, seen now, one more attempt than the archive held."""
    return {
        "kind": f.kind,
        "subject": f.subject,
        "reason": f.reason,
        "bridge_rowid": f.bridge_rowid,
        "event_id": f.event_id,
        "room_id": f.room_id,
        "detail": f.detail,
        "attempts": attempts,
        "last_seen": now.isoformat(),
        "resolved_at": None,
    }


def room_row(r: models.MonitoredRoom) -> Row:
    return {
        "room_id": r.room_id,
        "whatsapp_id": r.whatsapp_id,
        "room_name": r.room_name,
        "enabled": r.enabled,
        "archive_media": r.archive_media,
    }


def room_from(row: Row) -> models.MonitoredRoom:
    return models.MonitoredRoom(
        room_id=row["room_id"],
        enabled=bool(row["enabled"]),
        archive_media=bool(row["archive_media"]),
        whatsapp_id=row.get("whatsapp_id"),
        room_name=row.get("room_name"),
    )


def failure_from(row: Row) -> models.Failure:
    return models.Failure(
        kind=row["kind"],
        subject=row["subject"],
        reason=row["reason"],
        bridge_rowid=row.get("bridge_rowid"),
        event_id=row.get("event_id"),
        room_id=row.get("room_id"),
        detail=row.get("detail"),
    )


MEDIA_COLUMNS = (
    "id,event_id,mxc_url,kind,status,status_reason,attempts,room_id,original_filename,mimetype,"
    "size_bytes,sha256,source_sha256,storage_path,width,height,duration_ms,encrypted,uploaded_at"
)
_MEDIA_MERGED = (
    "room_id", "original_filename", "mimetype", "size_bytes", "sha256", "source_sha256",
    "storage_path", "width", "height", "duration_ms", "uploaded_at",
)  # fmt: skip


def media_state(row: Row) -> media_protocol.MediaState:
    return media_protocol.MediaState(
        id=int(row["id"]),
        event_id=row["event_id"],
        mxc_url=row["mxc_url"],
        kind=row["kind"],
        status=row["status"],
        attempts=int(row["attempts"]),
        room_id=row.get("room_id"),
        sha256=row.get("sha256"),
        storage_path=row.get("storage_path"),
    )


def media_needs_write(new: media_protocol.MediaRow, old: Row | None) -> bool:
    """The PG sink's rule (sink_media_upsert.sql): a stored row is never downgraded, and a stored
    row that would not change is left alone."""
    if old is None or old["status"] != "stored":
        return True
    return new.status == "stored" and (old.get("sha256"), old.get("storage_path")) != (
        new.sha256,
        new.storage_path,
    )


def media_row(new: media_protocol.MediaRow, old: Row | None, *, now: datetime) -> Row:
    """The row to upsert: what is known is kept where the new outcome leaves it blank."""
    row: Row = {
        "event_id": new.event_id,
        "mxc_url": new.mxc_url,
        "kind": new.kind,
        "status": new.status,
        "status_reason": new.status_reason,
        "room_id": new.room_id,
        "original_filename": new.original_filename,
        "mimetype": new.mimetype,
        "size_bytes": new.size_bytes,
        "sha256": new.sha256,
        "source_sha256": new.source_sha256,
        "storage_path": new.storage_path,
        "width": new.width,
        "height": new.height,
        "duration_ms": new.duration_ms,
        "encrypted": new.encrypted,
        "uploaded_at": _time(new.uploaded_at),
        "attempts": int(old["attempts"]) + 1 if old is not None else 1,
        "updated_at": now.isoformat(),
    }
    if old is not None:
        for column in _MEDIA_MERGED:
            if row[column] is None:
                row[column] = old.get(column)
    return row


def dedupe_messages(messages: Sequence[models.ArchivedMessage]) -> list[models.ArchivedMessage]:
    """One row per event (an upsert cannot touch a row twice): the newest bridge rowid wins."""
    by_event: dict[str, models.ArchivedMessage] = {}
    for message in messages:
        known = by_event.get(message.event_id)
        if known is None or (message.bridge_rowid or 0) >= (known.bridge_rowid or 0):
            by_event[message.event_id] = message
    return list(by_event.values())


def encoded_size(row: Row) -> int:
    """Bytes ``row`` takes in a request body (as postgrest-py encodes it: compact, UTF-8)."""
    text = json.dumps(row, ensure_ascii=False, separators=(",", ":"), default=str)
    return len(text.encode("utf-8")) + 1


def split_by_bytes(
    rows: Sequence[Row], *, max_bytes: int, size: Callable[[Row], int] = encoded_size
) -> Iterator[list[Row]]:
    """Consecutive runs of ``rows`` whose encoded size stays within ``max_bytes`` (a row larger
    than that goes alone: the server decides whether it fits)."""
    chunk: list[Row] = []
    used = 2  # the array brackets
    for row in rows:
        cost = size(row)
        if chunk and used + cost > max_bytes:
            yield chunk
            chunk, used = [], 2
        chunk.append(row)
        used += cost
    if chunk:
        yield chunk


def split_for_url(values: Sequence[str], *, max_chars: int) -> Iterator[list[str]]:
    """Runs of ``values`` whose ``in.(...)`` filter stays within ``max_chars`` of query string
    (gateways refuse long request lines: nginx's default header buffer is 8 KB)."""
    chunk: list[str] = []
    used = 0
    for value in values:
        cost = len(value) * 3 + 3  # worst-case percent-encoding, quotes and the comma
        if chunk and used + cost > max_chars:
            yield chunk
            chunk, used = [], 0
        chunk.append(value)
        used += cost
    if chunk:
        yield chunk
