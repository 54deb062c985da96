"""Archive records as rows named by the archive schema's columns (``sql/archive/``). Pure.

Both sinks send rows by column name (PostgREST's JSON bodies, the PostgreSQL sink's
``json_populate_recordset``); this is the one place that maps a record to those names.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from listener.core import models


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def message_scalars(m: models.ArchivedMessage) -> dict[str, Any]:
    """Every ``messages`` column but the JSON ones (``content``, ``original_content``,
    ``encrypted_content``),
    which each sink adds in its own form (parsed for PostgREST, spliced text for PostgreSQL)."""
    return {
        "event_id": m.event_id,
        "room_id": m.room_id,
        "room_name": m.room_name,
        "sender": m.sender,
        "sender_display_name": m.sender_display_name,
        "timestamp": _time(m.timestamp),
        "message_type": m.message_type,
        "content_raw": m.content_raw,
        "body": m.body,
        "whatsapp_message_id": m.whatsapp_message_id,
        "whatsapp_chat_id": m.whatsapp_chat_id,
        "whatsapp_sender_id": m.whatsapp_sender_id,
        "part_id": m.part_id,
        "bridge_id": m.bridge_id,
        "bridge_rowid": m.bridge_rowid,
        "room_type": m.room_type,
        "reply_to_event_id": m.reply_to_event_id,
        "thread_root_event_id": m.thread_root_event_id,
        "has_matrix_event": m.has_matrix_event,
        "edit_count": m.edit_count,
        "edited_at": _time(m.edited_at),
        "latest_edit_event_id": m.latest_edit_event_id,
        "deleted_at": _time(m.deleted_at),
        "redaction_event_id": m.redaction_event_id,
        "synapse_stream_ordering": m.synapse_stream_ordering,
        "bridge": m.bridge,
        "network": m.network,
        "network_message_id": m.network_message_id,
        "network_chat_id": m.network_chat_id,
        "network_sender_id": m.network_sender_id,
        "decryption": m.decryption,
        "megolm_session_id": m.megolm_session_id,
        "decryption_error": m.decryption_error,
    }
