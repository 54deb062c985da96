"""mautrix-whatsapp (github.com/mautrix/whatsapp).

Ids (``pkg/waid/id.go``, ``pkg/connector/id.go``):
- ``portal.id``: the chat JID without device (MakePortalID: ``jid.ToNonAD().String()``):
  ``<n>@g.us`` groups, ``<phone>@s.whatsapp.net`` / ``<n>@lid`` DMs, ``status@broadcast``,
  ``<n>@newsletter``, ``<n>@bot``.
- ``portal.receiver``: the login ID for DM, LID, bot and broadcast chats, ``''`` for groups unless
  ``split_portals`` (makeWAPortalKey).
- ``ghost.id``: phone digits (``s.whatsapp.net``), ``lid-<n>`` (``lid``), ``bot-<n>`` (``bot``)
  (MakeUserID, LIDPrefix, BotPrefix).
- ``user_login.id``: phone digits (MakeUserLoginID).
- ``message.id``: ``<chat JID>:<sender JID>:<WhatsApp message id>``, JIDs without device
  (MakeMessageID); ``fake:…`` or an id part starting ``FAKE::`` for messages WhatsApp never had
  (MakeFakeMessageID, ParseMessageID).
- ``part_id``: always ``''``: one part per WhatsApp message (``pkg/msgconv/from-whatsapp.go``).
"""

from __future__ import annotations

from dataclasses import dataclass

from listener.core.networks import profile

USER_SERVER = "s.whatsapp.net"
LID_SERVER = "lid"
BOT_SERVER = "bot"
# ghost.id prefixes for the non-phone servers (pkg/waid/id.go LIDPrefix, BotPrefix).
_PREFIXED = (("lid-", LID_SERVER), ("bot-", BOT_SERVER))


def _server(jid: str) -> str | None:
    user, at, server = jid.rpartition("@")
    return server if at and user and server else None


def sender_jid(ghost_id: str) -> str:
    """The JID a ghost ID stands for (pkg/waid/id.go ParseUserID)."""
    for prefix, server in _PREFIXED:
        if ghost_id.startswith(prefix):
            return f"{ghost_id.removeprefix(prefix)}@{server}"
    return f"{ghost_id}@{USER_SERVER}"


@dataclass(frozen=True)
class WhatsApp(profile.NetworkProfile):
    def parse_chat(self, chat_id: str) -> dict[str, str]:
        server = _server(chat_id)
        return {"chat_jid": chat_id, "chat_server": server} if server else {}

    def parse_sender(self, sender_id: str) -> dict[str, str]:
        return {"sender_jid": sender_jid(sender_id)}

    def parse_message(self, message_id: str) -> dict[str, str]:
        # The chat JID in the id is the one at receive time: after a phone-number → LID
        # migration portal.id differs (pkg/connector/lidmigrate.go), so join on columns.
        parts = message_id.split(":", 2)
        if len(parts) != 3:
            return {}
        chat, sender, wa_id = parts
        if chat == "fake" or wa_id.startswith("FAKE::"):
            return {"message_fake": "true"}
        if _server(chat) is None or _server(sender) is None or not wa_id:
            return {}
        return {"message_chat_jid": chat, "message_sender_jid": sender, "message_wa_id": wa_id}


WHATSAPP = WhatsApp(
    name="whatsapp",
    display_name="WhatsApp",
    ghost_templates=("whatsapp_{{.}}",),  # NetworkID "whatsapp" (pkg/connector/connector.go)
    multi_part=False,
    db_owners=("megabridge/mautrix-whatsapp",),  # Name (cmd/mautrix-whatsapp/main.go)
    legacy_owners=("mautrix-whatsapp",),
    # wadb.New: db.Child("whatsapp_version", …) (pkg/connector/wadb/database.go). Not
    # whatsmeow_version: mautrix-meta's WhatsApp-based E2EE store creates that one too.
    marker_tables=("whatsapp_version",),
    fills_whatsapp_columns=True,
)
