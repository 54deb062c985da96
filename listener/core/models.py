"""Records passed between layers. Frozen and slotted: they cross task boundaries."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

FAKE_MXID_PREFIX = "~fake:"


@dataclass(frozen=True, slots=True)
class BridgeRow:
    """One bridge ``message`` row (one message part) with its portal and ghost, LEFT-joined."""

    rowid: int
    bridge_id: str
    message_id: str
    part_id: str
    mxid: str
    chat_id: str
    room_receiver: str
    sender_id: str
    sender_mxid: str
    timestamp_ns: int
    thread_root_id: str | None
    reply_to_id: str | None
    reply_to_mxid: str | None
    thread_root_mxid: str | None
    metadata_json: str | None
    portal_mxid: str | None
    portal_name: str | None
    room_type: str | None
    ghost_name: str | None

    @property
    def has_matrix_event(self) -> bool:
        """``~fake:`` rows were never sent to Matrix: there is no Synapse event to wait for."""
        return not self.mxid.startswith(FAKE_MXID_PREFIX)


@dataclass(frozen=True, slots=True)
class SynapseEvent:
    """An event as Synapse stored it (``events`` joined with ``event_json``)."""

    event_id: str
    room_id: str
    event_type: str
    sender: str
    origin_server_ts_ms: int
    stream_ordering: int
    json_text: str
    outlier: bool
    rejection_reason: str | None
    internal_metadata: str | None = None
    received_ts_ms: int | None = None
    # Filled by the batch query: the m.replace events targeting this one, and its redaction.
    edits: tuple[SynapseEvent, ...] = ()
    redaction: Redaction | None = None
    # Set for an m.room.encrypted event once decryption was tried (``event_type`` and
    # ``json_text`` then hold the plaintext event when it succeeded).
    decryption: Decryption | None = None

    @property
    def usable(self) -> bool:
        """Outliers are not (yet) part of the room; rejected events never will be."""
        return not self.outlier and self.rejection_reason is None


@dataclass(frozen=True, slots=True)
class Decryption:
    """What decrypting an ``m.room.encrypted`` event gave (``core/megolm.py`` statuses)."""

    status: str
    encrypted_content_json: str  # the m.room.encrypted content as Synapse stored it
    session_id: str | None
    error: str | None = None  # a few words, never key material


@dataclass(frozen=True, slots=True)
class Redaction:
    """A redaction of some event, from Synapse's ``redactions`` table."""

    redaction_event_id: str
    redacts: str
    ts_ms: int


@dataclass(frozen=True, slots=True)
class ArchivedMessage:
    """One ``messages`` row of the archive."""

    event_id: str
    room_id: str | None
    room_name: str | None
    sender: str | None
    sender_display_name: str | None
    timestamp: datetime
    message_type: str | None
    content_json: str | None
    content_raw: str | None
    body: str | None
    whatsapp_message_id: str | None
    whatsapp_chat_id: str | None
    whatsapp_sender_id: str | None
    part_id: str | None
    bridge_id: str | None
    bridge_rowid: int | None
    room_type: str | None
    reply_to_event_id: str | None
    thread_root_event_id: str | None
    has_matrix_event: bool
    original_content_json: str | None = None
    edit_count: int = 0
    edited_at: datetime | None = None
    latest_edit_event_id: str | None = None
    deleted_at: datetime | None = None
    redaction_event_id: str | None = None
    synapse_stream_ordering: int | None = None
    # Where it came from (core/networks/origin.py fills these at the sink boundary): the
    # configured bridge, its network, and the bridge's own ids, verbatim.
    bridge: str | None = None
    network: str | None = None
    network_message_id: str | None = None
    network_chat_id: str | None = None
    network_sender_id: str | None = None
    # Encrypted rooms (migration 0006): None for a message that was never encrypted.
    decryption: str | None = None
    encrypted_content_json: str | None = None
    megolm_session_id: str | None = None
    decryption_error: str | None = None


@dataclass(frozen=True, slots=True)
class ArchivedEdit:
    """One ``message_edits`` row: a version of a message."""

    edit_event_id: str
    message_event_id: str
    edit_number: int
    sender: str | None
    new_content_json: str | None
    content_raw: str | None
    body: str | None
    edited_at: datetime


@dataclass(frozen=True, slots=True)
class ArchivedReaction:
    """One ``reactions`` row."""

    reaction_event_id: str
    message_event_id: str
    room_id: str | None
    sender: str | None
    emoji: str | None
    timestamp: datetime
    removed_at: datetime | None
    redaction_event_id: str | None


@dataclass(frozen=True, slots=True)
class Failure:
    """Something that could not be archived, recorded visibly and retryable."""

    kind: str
    subject: str
    reason: str
    bridge_rowid: int | None = None
    event_id: str | None = None
    room_id: str | None = None
    detail: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class MonitoredRoom:
    room_id: str
    enabled: bool = True
    archive_media: bool = True
    whatsapp_id: str | None = None
    room_name: str | None = None


@dataclass(slots=True)
class ArchiveBatch:
    """What one worker writes in one go: the sink makes it durable atomically where it can."""

    messages: list[ArchivedMessage] = field(default_factory=list)
    edits: list[ArchivedEdit] = field(default_factory=list)
    reactions: list[ArchivedReaction] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    resolved_subjects: list[str] = field(default_factory=list)
    new_rooms: list[MonitoredRoom] = field(default_factory=list)
    cursor: int | None = None

    def __bool__(self) -> bool:
        return bool(
            self.messages
            or self.edits
            or self.reactions
            or self.failures
            or self.resolved_subjects
            or self.new_rooms
        )
