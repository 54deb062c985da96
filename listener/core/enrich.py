"""Turn a bridge row and its Synapse event into an archive record. Pure: no I/O, no clock."""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime
from typing import Any

from listener.core import edits, errors, megolm, models, textsafe, timestamps

ROOM_MESSAGE = "m.room.message"


def timestamp_from_ns(timestamp_ns: int) -> datetime:
    """The bridge stores Unix nanoseconds; keep microsecond precision (what timestamptz holds)."""
    return timestamps.from_ns(timestamp_ns)


def timestamp_from_ms(timestamp_ms: int) -> datetime:
    return timestamps.from_ms(timestamp_ms)


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
    # In a thread, clients add a fallback m.in_reply_to (is_falling_back: true) for clients
    # without thread support: that is not a reply.
    falling_back = relates.get("rel_type") == "m.thread" and relates.get("is_falling_back") is True
    if (
        isinstance(in_reply_to, dict)
        and isinstance(in_reply_to.get("event_id"), str)
        and not falling_back
    ):
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
    shown = _shown(event, parse_event_json(event))
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
        **shown.fields(event),
        whatsapp_message_id=row.message_id,
        whatsapp_chat_id=row.chat_id,
        whatsapp_sender_id=row.sender_id,
        part_id=row.part_id,
        bridge_id=row.bridge_id,
        bridge_rowid=row.rowid,
        room_type=row.room_type,
        reply_to_event_id=shown.reply_to or row.reply_to_mxid,
        thread_root_event_id=shown.thread_root or row.thread_root_mxid,
        has_matrix_event=True,
    )


@dataclasses.dataclass(frozen=True, slots=True)
class _Shown:
    """What the archive shows of an event: its latest edit applied, its redaction noted."""

    message_type: str | None
    content_json: str | None
    content_raw: str | None
    body: str | None
    original_json: str | None
    reply_to: str | None
    thread_root: str | None
    edit_state: edits.EditState
    deleted_at: datetime | None
    redaction_event_id: str | None

    def fields(self, event: models.SynapseEvent) -> dict[str, Any]:
        """The ``ArchivedMessage`` fields that come from the event's shown state."""
        return {
            "message_type": self.message_type,
            "content_json": self.content_json,
            "content_raw": self.content_raw,
            "body": self.body,
            "original_content_json": self.original_json,
            "edit_count": self.edit_state.count,
            "edited_at": self.edited_at,
            "latest_edit_event_id": self.latest_edit_id,
            "deleted_at": self.deleted_at,
            "redaction_event_id": self.redaction_event_id,
            "synapse_stream_ordering": event.stream_ordering,
            **megolm.message_fields(event),
        }

    @property
    def edited_at(self) -> datetime | None:
        latest = self.edit_state.latest
        return timestamp_from_ms(latest.origin_server_ts_ms) if latest else None

    @property
    def latest_edit_id(self) -> str | None:
        latest = self.edit_state.latest
        return latest.event_id if latest else None


def _shown(event: models.SynapseEvent, pdu: dict[str, Any]) -> _Shown:
    content: dict[str, Any] = pdu.get("content", {})
    redaction = event.redaction
    # Synapse prunes a redacted event's content to {} after its retention period: that is not
    # the message's content, so it is left unknown (None) and never overwrites what we kept.
    pruned = redaction is not None and not content
    state = edits.edit_state(event)
    shown = state.current_content if state.current_content is not None else content
    known = not (pruned and state.current_content is None)
    content_json, content_raw = textsafe.storable_json(shown) if known else (None, None)
    original = None
    if state.current_content is not None and not pruned:
        original, _ = textsafe.storable_json(content)
    reply_to, thread_root = relations(content)
    return _Shown(
        message_type=message_type(event.event_type, shown) if known else None,
        content_json=content_json,
        content_raw=content_raw,
        body=_body(shown) if known else None,
        original_json=original,
        reply_to=reply_to,
        thread_root=thread_root,
        edit_state=state,
        deleted_at=timestamp_from_ms(redaction.ts_ms) if redaction else None,
        redaction_event_id=redaction.redaction_event_id if redaction else None,
    )


@dataclasses.dataclass(frozen=True, slots=True)
class RoomInfo:
    """What the bridge still knows of a room (its portal), for messages without a bridge row."""

    chat_id: str | None
    room_name: str | None
    room_type: str | None


def ghost_id(sender: str, ghost_prefix: str) -> str | None:
    """The WhatsApp ID in a ghost's Matrix ID (``@whatsapp_<id>:server``), if it is one."""
    localpart = sender.removeprefix("@").split(":", 1)[0]
    if ghost_prefix and localpart.startswith(ghost_prefix) and len(localpart) > len(ghost_prefix):
        return localpart[len(ghost_prefix) :]
    return None


def from_synapse_only(
    event: models.SynapseEvent,
    room: RoomInfo | None,
    synapse_display_name: str | None,
    *,
    ghost_prefix: str = "whatsapp_",
) -> models.ArchivedMessage:
    """A record for a message event whose bridge row is gone (or never existed).

    Raises MalformedEvent when the event JSON cannot be used.
    """
    shown = _shown(event, parse_event_json(event))
    name = synapse_display_name if synapse_display_name and synapse_display_name.strip() else None
    return models.ArchivedMessage(
        event_id=event.event_id,
        room_id=event.room_id,
        room_name=_none_if_empty(room.room_name if room else None),
        sender=event.sender,
        sender_display_name=textsafe.safe_text(name) if name else None,
        timestamp=timestamp_from_ms(event.origin_server_ts_ms),
        **shown.fields(event),
        whatsapp_message_id=None,
        whatsapp_chat_id=room.chat_id if room else None,
        whatsapp_sender_id=ghost_id(event.sender, ghost_prefix),
        part_id=None,
        bridge_id=None,
        bridge_rowid=None,
        room_type=room.room_type if room else None,
        reply_to_event_id=shown.reply_to,
        thread_root_event_id=shown.thread_root,
        has_matrix_event=True,
    )


def reaction(event: models.SynapseEvent) -> models.ArchivedReaction | None:
    """The record of an ``m.reaction`` event; None when it is not an annotation of an event.

    A reaction pruned after its redaction has lost its key and target: the caller keeps what
    was archived before (the upsert never blanks a known emoji).
    """
    try:
        pdu = parse_event_json(event)
    except errors.MalformedEvent:
        return None
    relation = pdu.get("content", {}).get("m.relates_to")
    if not isinstance(relation, dict) or relation.get("rel_type") != "m.annotation":
        return None
    target = relation.get("event_id")
    if not isinstance(target, str):
        return None
    key = relation.get("key")
    redaction = event.redaction
    return models.ArchivedReaction(
        reaction_event_id=event.event_id,
        message_event_id=target,
        room_id=event.room_id,
        sender=event.sender,
        emoji=textsafe.safe_text(key) if isinstance(key, str) else None,
        timestamp=timestamp_from_ms(event.origin_server_ts_ms),
        removed_at=timestamp_from_ms(redaction.ts_ms) if redaction else None,
        redaction_event_id=redaction.redaction_event_id if redaction else None,
    )
