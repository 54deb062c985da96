"""mautrix-slack (github.com/mautrix/slack).

Ids (``pkg/slackid/id.go``, ``pkg/connector/id.go``):
- ``portal.id``: ``<team ID>-<channel ID>``, or ``<team ID>`` for the team's space portal
  (MakePortalID, MakeTeamPortalID).
- ``portal.receiver``: the login ID for IMs and MPIMs, ``''`` for channels and the team space
  unless ``split_portals`` (makePortalKey, makeTeamPortalKey).
- ``ghost.id``: ``<team ID>-<user ID>`` in lower case (MakeUserID); ``user_login.id`` the same in
  Slack's upper case (MakeUserLoginID).
- ``message.id``: ``<team ID>-<channel ID>-<message ts>`` (MakeMessageID); a thread reply's
  ``thread_root_id`` is its thread's message ID (``pkg/msgconv/from-slack.go``).
- ``part_id``: ``''`` for the text, ``file-<i>-<file ID>`` per file, ``attachment-<i>-<id>`` per
  image block (MakePartID; a merged caption leaves the file part alone).
- ``portal.room_type``: ``dm`` (IM), ``group_dm`` (MPIM), ``space`` (team), ``''`` (channel)
  (``pkg/connector/chatinfo.go``).
"""

from __future__ import annotations

from dataclasses import dataclass

from listener.core.networks import profile


@dataclass(frozen=True)
class Slack(profile.NetworkProfile):
    def parse_chat(self, chat_id: str) -> dict[str, str]:
        parts = chat_id.split("-")
        if len(parts) == 1 and parts[0]:
            return {"chat_team_id": parts[0]}
        if len(parts) == 2 and all(parts):
            return {"chat_team_id": parts[0], "chat_channel_id": parts[1]}
        return {}

    def parse_sender(self, sender_id: str) -> dict[str, str]:
        # Lower-cased by MakeUserID; ParseUserID upper-cases both halves back.
        parts = sender_id.split("-")
        if len(parts) != 2 or not all(parts):
            return {}
        return {"sender_team_id": parts[0].upper(), "sender_user_id": parts[1].upper()}

    def parse_message(self, message_id: str) -> dict[str, str]:
        parts = message_id.split("-")
        if len(parts) != 3 or not all(parts):
            return {}
        team, channel, ts = parts
        return {"message_team_id": team, "message_channel_id": channel, "message_ts": ts}

    def part(self, part_id: str) -> profile.PartInfo:
        if part_id == "":
            return profile.FIRST_PART
        parts = part_id.split("-")
        index = profile.number(parts[1]) if len(parts) == 3 else None
        if index is None:
            return profile.PartInfo(native_id=part_id)
        return profile.PartInfo(index=index, kind=parts[0], native_id=parts[2])


SLACK = Slack(
    name="slack",
    display_name="Slack",
    ghost_templates=("slack_{{.}}",),  # NetworkID "slack" (pkg/connector/connector.go)
    multi_part=True,
    db_owners=("megabridge/mautrix-slack",),  # Name (cmd/mautrix-slack/main.go)
    legacy_owners=("mautrix-slack",),
    # slackdb.New: db.Child("slack_version", …) (pkg/connector/slackdb/database.go)
    marker_tables=("slack_version",),
)
