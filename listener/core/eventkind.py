"""What a Synapse event is to the archive: a message, an edit, a reaction, a redaction. Pure."""

from __future__ import annotations

import enum
from typing import Any

MESSAGE_TYPES = frozenset({"m.room.message", "m.room.encrypted", "m.sticker"})
# The event types the reconciliation pass reads from Synapse's stream.
STREAM_TYPES = (*sorted(MESSAGE_TYPES), "m.reaction", "m.room.redaction")


class Kind(enum.Enum):
    MESSAGE = "message"
    EDIT = "edit"
    REACTION = "reaction"
    REDACTION = "redaction"
    OTHER = "other"


def relates_to(content: dict[str, Any]) -> tuple[str | None, str | None]:
    """``(rel_type, event_id)`` of ``m.relates_to`` (cleartext even in encrypted rooms)."""
    relation = content.get("m.relates_to")
    if not isinstance(relation, dict):
        return None, None
    rel_type = relation.get("rel_type")
    event_id = relation.get("event_id")
    return (
        rel_type if isinstance(rel_type, str) else None,
        event_id if isinstance(event_id, str) else None,
    )


def classify(event_type: str, content: dict[str, Any]) -> Kind:
    if event_type == "m.room.redaction":
        return Kind.REDACTION
    if event_type == "m.reaction":
        return Kind.REACTION
    if event_type in MESSAGE_TYPES:
        rel_type, target = relates_to(content)
        return Kind.EDIT if rel_type == "m.replace" and target else Kind.MESSAGE
    return Kind.OTHER


def redacts(pdu: dict[str, Any]) -> str | None:
    """The target of a redaction: top-level ``redacts`` (rooms up to v10) or in content (v11+)."""
    target = pdu.get("redacts")
    if isinstance(target, str):
        return target
    content = pdu.get("content")
    if isinstance(content, dict) and isinstance(content.get("redacts"), str):
        return str(content["redacts"])
    return None
