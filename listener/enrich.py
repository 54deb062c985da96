"""Turn a bridge row and its Synapse event into an archive record. Pure: no I/O, no clock."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from typing import Any

from listener import errors, models, textsafe

ROOM_MESSAGE = "m.room.message"


def timestamp_from_ns(timestamp_ns: int) -> datetime:
    """The bridge stores Unix nanoseconds; keep microsecond precision (what timestamptz holds)."""
    seconds, ns = divmod(timestamp_ns, 1_000_000_000)
    return datetime.fromtimestamp(seconds, tz=UTC).replace(microsecond=ns // 1000)


def timestamp_from_ms(timestamp_ms: int) -> datetime:
    seconds, ms = divmod(timestamp_ms, 1000)
    return datetime.fromtimestamp(seconds, tz=UTC).replace(microsecond=ms * 1000)


def parse_event_json(event: models.SynapseEvent) -> dict[str, Any]:
    """The PDU as a dict; raise MalformedEvent when it is not a JSON object with a content dict."""
    try:
        pdu = json.loads(event.json_text)
    except (ValueError, RecursionError) as exc:
        raise errors.MalformedEvent(f"event {event.event_id}: invalid JSON ({exc})") from None
    if not isinstance(pdu, dict):
        raise errors.MalformedEvent(f"event {event.event_id}: JSON is not an object")
    content = pdu.get("content", {})
    if not isinstance(content, dict):
        raise errors.MalformedEvent(f"event {event.event_id}: content is not an object")
    return pdu


def message_type(event_type: str, content: dict[str, Any]) -> str:
    """The msgtype for room messages, else the event type (m.sticker, m.room.encrypted, …)."""
    if event_type == ROOM_MESSAGE:
        msgtype = content.get("msgtype")
        return msgtype if isinstance(msgtype, str) and msgtype else ROOM_MESSAGE
    return event_type


def relations(content: dict[str, Any]) -> tuple[str | None, str | None]:
    """``(reply_to_event_id, thread_root_event_id)`` from ``m.relates_to``."""
    relates = content.get("m.relates_to")
    if not isinstance(relates, dict):
        return None, None
    reply_to = None
    in_reply_to = relates.get("m.in_reply_to")
    if isinstance(in_reply_to, dict) and isinstance(in_reply_to.get("event_id"), str):
        reply_to = in_reply_to["event_id"]
    thread_root = None
    if relates.get("rel_type") == "m.thread" and isinstance(relates.get("event_id"), str):
        thread_root = relates["event_id"]
    return reply_to, thread_root


def display_name(row: models.BridgeRow, synapse_display_name: str | None) -> str | None:
    """The ghost's name once the bridge has synced the contact, else Synapse's, never ''."""
    for candidate in (row.ghost_name, synapse_display_name):
        if candidate and candidate.strip():
            return textsafe.safe_text(candidate)
    return None


def _body(content: dict[str, Any]) -> str | None:
    body = content.get("body")
    return textsafe.safe_text(body) if isinstance(body, str) else None


def _bridge_only(
    row: models.BridgeRow, synapse_display_name: str | None, room_id: str | None
) -> models.ArchivedMessage:
    return models.ArchivedMessage(
        event_id=row.mxid,
        room_id=row.portal_mxid or room_id,
        room_name=_none_if_empty(row.portal_name),
        sender=row.sender_mxid or None,
        sender_display_name=display_name(row, synapse_display_name),
        timestamp=timestamp_from_ns(row.timestamp_ns),
        message_type=None,
        content_json=None,
        content_raw=None,
        body=None,
        whatsapp_message_id=row.message_id,
        whatsapp_chat_id=row.chat_id,
        whatsapp_sender_id=row.sender_id,
        part_id=row.part_id,
        bridge_id=row.bridge_id,
        bridge_rowid=row.rowid,
        room_type=row.room_type,
        reply_to_event_id=row.reply_to_mxid,
        thread_root_event_id=row.thread_root_mxid,
        has_matrix_event=row.has_matrix_event,
    )


def _none_if_empty(value: str | None) -> str | None:
    return textsafe.safe_text(value) if value else None


def from_bridge_only(
    row: models.BridgeRow, synapse_display_name: str | None = None
) -> models.ArchivedMessage:
    """A record from what the bridge knows alone (``~fake:`` rows have no Matrix event)."""
    return _bridge_only(row, synapse_display_name, None)


def from_malformed(
    row: models.BridgeRow, event: models.SynapseEvent, synapse_display_name: str | None
) -> models.ArchivedMessage:
    """Bridge data plus the event's raw text, kept losslessly, when its JSON cannot be used."""
    record = _bridge_only(row, synapse_display_name, event.room_id)
    raw = textsafe.safe_text(event.json_text)
    return dataclasses.replace(record, content_raw=raw, message_type=event.event_type or None)


def enrich(
    row: models.BridgeRow, event: models.SynapseEvent, synapse_display_name: str | None
) -> models.ArchivedMessage:
    """The archive record for a bridge row whose Synapse event is known and usable.

    Raises MalformedEvent when the event JSON cannot be used; callers archive the bridge data
    with ``from_malformed`` and record the failure.
    """
    pdu = parse_event_json(event)
    content: dict[str, Any] = pdu.get("content", {})
    content_json, content_raw = textsafe.storable_json(content)
    reply_to, thread_root = relations(content)
    timestamp = (
        timestamp_from_ns(row.timestamp_ns)
        if row.timestamp_ns > 0
        else timestamp_from_ms(event.origin_server_ts_ms)
    )
    return models.ArchivedMessage(
        event_id=row.mxid,
        room_id=row.portal_mxid or event.room_id,
        room_name=_none_if_empty(row.portal_name),
        sender=row.sender_mxid or event.sender,
        sender_display_name=display_name(row, synapse_display_name),
        timestamp=timestamp,
        message_type=message_type(event.event_type, content),
        content_json=content_json,
        content_raw=content_raw,
        body=_body(content),
        whatsapp_message_id=row.message_id,
        whatsapp_chat_id=row.chat_id,
        whatsapp_sender_id=row.sender_id,
        part_id=row.part_id,
        bridge_id=row.bridge_id,
        bridge_rowid=row.rowid,
        room_type=row.room_type,
        reply_to_event_id=reply_to or row.reply_to_mxid,
        thread_root_event_id=thread_root or row.thread_root_mxid,
        has_matrix_event=True,
    )
