"""mautrix-gmessages (github.com/mautrix/gmessages): Google Messages (SMS, RCS).

It has no id package: the rules live in ``pkg/connector/id.go``. Every portal, ghost and message
ID is ``<login prefix>.<Google id>`` (makeAnyID), the prefix being per login: a number handed out
by the table ``gmessages_login_prefix`` (``pkg/connector/gmdb/database.go`` GetLoginPrefix), or
with ``deterministic_id_prefix`` 16 hex digits of SHA-256 of the login ID
(``pkg/connector/login.go`` finishLogin).
- ``portal.id``: ``<prefix>.<conversation id>``; ``portal.receiver``: always the login ID
  (MakePortalKey): every chat belongs to one phone.
- ``ghost.id``: ``<prefix>.<participant id>``; ``user_login.id``: the phone's source ID.
- ``message.id``: ``<prefix>.<message id>``.
- ``part_id``: ``''`` for the first part, the media's action message ID for further media parts
  (``pkg/connector/handlegmessages.go`` convertGoogleMessage).
- ``portal.room_type``: ``dm`` unless the conversation is a group (``pkg/connector/chatinfo.go``).
"""

from __future__ import annotations

from dataclasses import dataclass

from listener.core.networks import profile


def split(any_id: str) -> tuple[str, str] | None:
    """``(login prefix, Google id)`` (pkg/connector/id.go parseAnyID: split at the first dot)."""
    prefix, dot, real = any_id.partition(".")
    return (prefix, real) if dot and prefix and real else None


@dataclass(frozen=True)
class GMessages(profile.NetworkProfile):
    def parse_chat(self, chat_id: str) -> dict[str, str]:
        parts = split(chat_id)
        return {"chat_login_prefix": parts[0], "chat_conversation_id": parts[1]} if parts else {}

    def parse_sender(self, sender_id: str) -> dict[str, str]:
        parts = split(sender_id)
        return {"sender_participant_id": parts[1]} if parts else {}

    def parse_message(self, message_id: str) -> dict[str, str]:
        parts = split(message_id)
        return {"message_gm_id": parts[1]} if parts else {}


GMESSAGES = GMessages(
    name="gmessages",
    display_name="Google Messages",
    ghost_templates=("gmessages_{{.}}",),  # NetworkID "gmessages" (pkg/connector/connector.go)
    multi_part=True,
    db_owners=("megabridge/mautrix-gmessages",),  # Name (cmd/mautrix-gmessages/main.go)
    legacy_owners=("mautrix-gmessages",),
    # gmdb.New: db.Child("gmessages_version", …) (pkg/connector/gmdb/database.go)
    marker_tables=("gmessages_version", "gmessages_login_prefix"),
)
