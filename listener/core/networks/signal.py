"""mautrix-signal (github.com/mautrix/signal).

Ids (``pkg/signalid/ids.go``, ``pkg/connector/id.go``):
- ``portal.id``: a group's identifier, standard base64 of 32 bytes (44 characters;
  ``pkg/signalmeow/types/identifer.go``), or for a DM the other side's service ID string:
  the ACI UUID, or ``PNI:<uuid>`` (MakeGroupPortalID, MakeDMPortalID; ``pkg/libsignalgo/
  serviceid.go`` ServiceID.String). ParsePortalID tells them apart by length 44.
- ``portal.receiver``: the login ID for every non-group chat, ``''`` for groups unless
  ``split_portals`` (makePortalKey).
- ``ghost.id``: the ACI UUID, or ``pni_<uuid>`` for a PNI-only contact (MakeUserIDFromServiceID).
- ``user_login.id``: the account's ACI UUID (MakeUserLoginID).
- ``message.id``: ``<sender ACI>|<timestamp in ms>`` (MakeMessageID).
- ``part_id``: ``''`` for the first part, then ``1``, ``2``, … (MakeMessagePartID): one part per
  attachment, contact, payment … plus the text (``pkg/msgconv/from-signal.go``; a lone caption is
  merged into its attachment).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from listener.core.networks import profile

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_GROUP_ID = re.compile(r"[A-Za-z0-9+/]{43}=")
_PNI_PORTAL = "PNI:"  # libsignalgo ServiceIDFromString accepts any case
_PNI_GHOST = "pni_"


def _uuid(text: str) -> str | None:
    return text.lower() if _UUID.fullmatch(text) else None


@dataclass(frozen=True)
class Signal(profile.NetworkProfile):
    def parse_chat(self, chat_id: str) -> dict[str, str]:
        if len(chat_id) == 44:
            return {"chat_group_id": chat_id} if _GROUP_ID.fullmatch(chat_id) else {}
        if chat_id[:4].upper() == _PNI_PORTAL:
            pni = _uuid(chat_id[4:])
            return {"chat_pni": pni} if pni else {}
        aci = _uuid(chat_id)
        return {"chat_aci": aci} if aci else {}

    def parse_sender(self, sender_id: str) -> dict[str, str]:
        if sender_id.startswith(_PNI_GHOST):
            pni = _uuid(sender_id.removeprefix(_PNI_GHOST))
            return {"sender_pni": pni} if pni else {}
        aci = _uuid(sender_id)
        return {"sender_aci": aci} if aci else {}

    def parse_message(self, message_id: str) -> dict[str, str]:
        parts = message_id.split("|")
        if len(parts) != 2:
            return {}
        aci, timestamp = _uuid(parts[0]), parts[1]
        if aci is None or profile.number(timestamp) is None:
            return {}
        return {"message_sender_aci": aci, "message_timestamp_ms": timestamp}

    def part(self, part_id: str) -> profile.PartInfo:
        if part_id == "":
            return profile.FIRST_PART
        return profile.PartInfo(index=profile.number(part_id))


SIGNAL = Signal(
    name="signal",
    display_name="Signal",
    ghost_templates=("signal_{{.}}",),  # NetworkID "signal" (pkg/connector/connector.go)
    multi_part=True,
    db_owners=("megabridge/mautrix-signal",),  # Name (cmd/mautrix-signal/main.go)
    legacy_owners=("mautrix-signal",),
    # Container: db.Child("signalmeow_version", …) (pkg/signalmeow/store/container.go)
    marker_tables=("signalmeow_version",),
)
