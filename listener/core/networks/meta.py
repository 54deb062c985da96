"""mautrix-meta (github.com/mautrix/meta): Facebook Messenger and Instagram, one database schema.

Ids (``pkg/metaid/ids.go``, ``pkg/connector/ids.go``, ``pkg/igconnector/ids.go``):
- ``portal.id``: the decimal thread ID (MakeFBPortalID), or for an end-to-end encrypted
  Messenger chat the user part of its WhatsApp-protocol JID (MakeWAPortalID; the server is kept
  in portal metadata ``whatsapp_server``, ``pkg/metaid/dbmeta.go``).
- ``portal.receiver``: the login ID for one-to-one (and unknown-type) threads, ``''`` for groups
  unless ``split_portals`` (makeFBPortalKey, makeWAPortalKey; Instagram makePortalKey; Instagram
  events whose thread is not known yet use the login ID, makeUncertainPortalKey).
- ``ghost.id`` and ``user_login.id``: the decimal Facebook/Instagram user ID (MakeUserID,
  MakeUserLoginID; MakeWAUserID for E2EE senders).
- ``message.id``: ``fb:<message id>`` (``mid.$…`` on Messenger), or for E2EE messages
  ``wa:<chat JID>:<sender JID>:<message id>`` (MakeFBMessageID, MakeWAMessageID).
- ``part_id``: ``''`` for the first part, then ``1``, ``2``, … (MakeMessagePartID), or named media
  parts ``blob_attachment_<i>``, ``attachment_<i>``, ``xma_attachment_<i>``, ``sticker_<i>``,
  ``beeper_link_preview_<i>`` (``pkg/msgconv/from-meta.go``; a merged caption keeps the media
  part's name) and on Instagram ``<type>-<i>``, ``xma-text-body``
  (``pkg/msgconv/igconv/from-instagram.go``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from listener.core.networks import profile

FB_PREFIX = "fb:"
WA_PREFIX = "wa:"
_NAMED_PART = re.compile(r"([A-Za-z_]+?)[_-]([0-9]+)")


@dataclass(frozen=True)
class Meta(profile.NetworkProfile):
    def parse_chat(self, chat_id: str) -> dict[str, str]:
        return {"chat_thread_id": chat_id} if profile.number(chat_id) is not None else {}

    def parse_sender(self, sender_id: str) -> dict[str, str]:
        return {"sender_user_id": sender_id} if profile.number(sender_id) is not None else {}

    def parse_message(self, message_id: str) -> dict[str, str]:
        if message_id.startswith(FB_PREFIX) and len(message_id) > len(FB_PREFIX):
            return {"message_source": "fb", "message_mid": message_id.removeprefix(FB_PREFIX)}
        parts = message_id.split(":", 3)
        if len(parts) == 4 and parts[0] + ":" == WA_PREFIX and all(parts[1:]):
            return {
                "message_source": "wa",
                "message_chat_jid": parts[1],
                "message_sender_jid": parts[2],
                "message_wa_id": parts[3],
            }
        return {}

    def part(self, part_id: str) -> profile.PartInfo:
        if part_id == "":
            return profile.FIRST_PART
        index = profile.number(part_id)
        if index is not None:
            return profile.PartInfo(index=index)
        named = _NAMED_PART.fullmatch(part_id)
        if named:
            return profile.PartInfo(index=int(named[2]), kind=named[1])
        return profile.PartInfo(kind=part_id)


META = Meta(
    name="meta",
    display_name="Meta (Messenger, Instagram)",
    # NetworkID "facebook" (pkg/connector/connector.go, binary mautrix-facebook) or "instagram"
    # (pkg/igconnector/connector.go, binary mautrix-instagram); "meta" for mautrix-meta ≤ v0.5
    # run without a mode (v0.5.3 pkg/connector/connector.go GetName). The database cannot tell
    # which: the platform is only in user_login.metadata, which the archiver may not read.
    ghost_templates=("facebook_{{.}}", "instagram_{{.}}", "meta_{{.}}"),
    multi_part=True,
    # DBOwner of both binaries (cmd/mautrix-meta/main.go, cmd/mautrix-instagram/main.go).
    db_owners=("megabridge/mautrix-meta",),
    legacy_owners=("mautrix-meta",),
    marker_tables=("meta_version",),  # metadb.New: db.Child("meta_version", …) (pkg/metadb)
)
