"""The shape every network profile shares, and the generic profile (ids kept verbatim).

bridgev2 keys everything by opaque strings the network connector chooses (mautrix/go
``bridgev2/networkid/bridgeid.go``: PortalID, UserID, UserLoginID, MessageID, PartID): the
bridge's ``message.id``, ``portal.id`` (+ ``receiver``) and ``ghost.id`` are unique within one
``bridge_id``, not across bridges. The network-neutral fields are those strings verbatim, so they
always join back to the bridge's rows; a profile adds what it can parse out of them (``extras``).
"""

from __future__ import annotations

import enum
import functools
from dataclasses import dataclass, field

from listener.core.networks import ghosts


class ChatKind(enum.Enum):
    """``portal.room_type`` (mautrix/go ``bridgev2/database/portal.go``: RoomTypeDefault ``''``,
    RoomTypeDM ``dm``, RoomTypeGroupDM ``group_dm``, RoomTypeSpace ``space``)."""

    GROUP = "group"  # '' : the default, a group chat or channel
    DM = "dm"
    GROUP_DM = "group_dm"  # a direct chat with several people (e.g. a Slack MPIM)
    SPACE = "space"  # a container portal (a Slack team, a WhatsApp community parent)
    UNKNOWN = "unknown"  # no portal row (deleted chat) or a value this version does not know

    @classmethod
    def from_room_type(cls, room_type: str | None) -> ChatKind:
        if room_type is None:
            return cls.UNKNOWN
        if room_type == "":
            return cls.GROUP
        try:
            return cls(room_type)
        except ValueError:
            return cls.UNKNOWN

    @property
    def is_direct(self) -> bool:
        return self in (ChatKind.DM, ChatKind.GROUP_DM)


@dataclass(frozen=True, slots=True)
class NetworkIds:
    """A message part's ids as the archive keeps them: the bridge's strings verbatim (None where
    the bridge has none), plus network-specific parts parsed out of them. ``extras`` keys start
    with ``chat_``, ``sender_`` or ``message_`` after the id they came from."""

    network_message_id: str | None
    network_chat_id: str | None
    network_sender_id: str | None
    extras: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PartInfo:
    """What a ``message.part_id`` says. ``''`` is the first (often only) part everywhere
    (bridgev2 ``networkinterface.go`` ConvertedMessagePart: an unset ID is ``''``)."""

    index: int | None = None
    kind: str | None = None
    native_id: str | None = None


FIRST_PART = PartInfo(index=0)


def number(text: str) -> int | None:
    """``text`` as a non-negative decimal number (ASCII digits only), else None."""
    return int(text) if text.isascii() and text.isdigit() else None


@dataclass(frozen=True)
class NetworkProfile:
    """One bridge network. Subclasses override the ``parse_*`` methods; this base class is the
    generic profile: every id kept verbatim, nothing parsed.

    ``multi_part``: whether the connector sends one remote message as several Matrix events
    (one ``message`` row each, told apart by ``part_id``).
    ``db_owners``: ``database_owner.owner`` values its bridge writes (go.mau.fi/util
    ``dbutil/upgrades.go`` checkDatabaseOwner; the value is BridgeMain.GetDBOwner in mautrix/go
    ``bridgev2/matrix/mxmain/main.go``: ``megabridge/<name>`` unless the bridge sets DBOwner).
    ``marker_tables``: tables only this network's connector creates in the bridge database.
    ``fills_whatsapp_columns``: the archive's ``whatsapp_*`` columns keep their meaning (the PRD's
    Supabase schema) and are filled for WhatsApp only; other networks use the ``network_*`` ones.
    """

    name: str = "generic"
    display_name: str = "bridgev2 (generic)"
    ghost_templates: tuple[str, ...] = ()
    multi_part: bool = True
    db_owners: tuple[str, ...] = ()
    legacy_owners: tuple[str, ...] = ()
    marker_tables: tuple[str, ...] = ()
    fills_whatsapp_columns: bool = False

    def templates(self, configured: str | None = None) -> tuple[ghosts.GhostTemplate, ...]:
        """The configured ``ghost_template`` if any, else the network's defaults."""
        raw = (configured,) if configured else self.ghost_templates
        return tuple(_template(t) for t in raw)

    def ghost_id(self, mxid: str, *, configured: str | None = None) -> str | None:
        """The ghost ID behind a Matrix user ID, if it is one of this bridge's ghosts."""
        for template in self.templates(configured):
            ghost = template.ghost_id(mxid)
            if ghost is not None:
                return ghost
        return None

    def describe(
        self,
        *,
        message_id: str | None,
        chat_id: str | None,
        sender_id: str | None,
        receiver: str = "",
    ) -> NetworkIds:
        """The archive's ids for one message part; empty strings count as unknown."""
        extras: dict[str, str] = {}
        if chat_id:
            extras |= self.parse_chat(chat_id)
        if receiver:
            # The login the portal belongs to: always for DMs, for groups only with
            # bridge.split_portals (mxmain example-config.yaml), where each login gets its own
            # copy of the chat and of every message in it (same message.id, other receiver).
            extras["chat_receiver"] = receiver
        if sender_id:
            extras |= self.parse_sender(sender_id)
        if message_id:
            extras |= self.parse_message(message_id)
        return NetworkIds(message_id or None, chat_id or None, sender_id or None, extras)

    def chat_kind(self, room_type: str | None) -> ChatKind:
        return ChatKind.from_room_type(room_type)

    def parse_chat(self, chat_id: str) -> dict[str, str]:
        return {}

    def parse_sender(self, sender_id: str) -> dict[str, str]:
        return {}

    def parse_message(self, message_id: str) -> dict[str, str]:
        return {}

    def part(self, part_id: str) -> PartInfo:
        return FIRST_PART if part_id == "" else PartInfo(native_id=part_id)


@functools.cache
def _template(text: str) -> ghosts.GhostTemplate:
    return ghosts.GhostTemplate.parse(text)


GENERIC = NetworkProfile()
