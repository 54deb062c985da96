"""Edits (``m.replace``): which apply, what a message shows now, one record per version. Pure.

The bridge delivers WhatsApp edits, and also late real content (media retry, HD media, a message
that could first not be decrypted), as ``m.replace`` events. Like Synapse, only an edit by the
original sender with the original event type counts, and the latest one (by origin_server_ts,
then event ID) is what the message shows.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from listener.core import models, textsafe, timestamps

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class EditState:
    """A message's edits in order, and the content the latest applicable one gives it."""

    edits: tuple[tuple[models.SynapseEvent, dict[str, Any]], ...]
    current_content: dict[str, Any] | None  # the latest m.new_content, None if no edit applies

    @property
    def count(self) -> int:
        return len(self.edits)

    @property
    def latest(self) -> models.SynapseEvent | None:
        return self.edits[-1][0] if self.edits else None


def _pdu(event: models.SynapseEvent) -> dict[str, Any] | None:
    try:
        pdu = json.loads(event.json_text)
    except (ValueError, RecursionError):
        logger.warning("ignoring edit %s: invalid JSON", event.event_id)
        return None
    if not isinstance(pdu, dict) or not isinstance(pdu.get("content"), dict):
        logger.warning("ignoring edit %s: no content object", event.event_id)
        return None
    return pdu


def edit_state(original: models.SynapseEvent) -> EditState:
    applicable = []
    for edit in original.edits:
        if edit.sender != original.sender or edit.event_type != original.event_type:
            continue  # Synapse and the bridge ignore edits by anyone else
        if not edit.usable:
            continue
        pdu = _pdu(edit)
        if pdu is not None:
            applicable.append((edit, pdu["content"]))
    applicable.sort(key=lambda pair: (pair[0].origin_server_ts_ms, pair[0].event_id))
    current = None
    for _edit, content in applicable:
        new_content = content.get("m.new_content")
        if isinstance(new_content, dict):
            current = new_content
    return EditState(tuple((edit, content) for edit, content in applicable), current)


def edit_records(message_event_id: str, state: EditState) -> list[models.ArchivedEdit]:
    records = []
    for number, (edit, content) in enumerate(state.edits, start=1):
        new_content = content.get("m.new_content")
        stored = new_content if isinstance(new_content, dict) else content
        content_json, content_raw = textsafe.storable_json(stored)
        body = stored.get("body")
        records.append(
            models.ArchivedEdit(
                edit_event_id=edit.event_id,
                message_event_id=message_event_id,
                edit_number=number,
                sender=edit.sender,
                new_content_json=content_json,
                content_raw=content_raw,
                body=textsafe.safe_text(body) if isinstance(body, str) else None,
                edited_at=timestamps.from_ms(edit.origin_server_ts_ms),
            )
        )
    return records
