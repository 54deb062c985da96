"""Which rooms are archived. Pure: built from the settings and the monitored_rooms table."""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

from listener.core import models


class Decision(enum.Enum):
    ARCHIVE = "archive"
    SKIP = "skip"
    REGISTER = "register"  # unknown room, auto-registration on: archive it and add it


@dataclass(frozen=True, slots=True)
class RoomFilter:
    """``MONITORED_ROOMS`` and enabled table rows select rooms; empty both means every room.

    A room is named by its Matrix room ID or its WhatsApp chat ID. A disabled table row
    excludes a room unless the setting names it explicitly.
    """

    configured: frozenset[str]
    enabled: frozenset[str]
    disabled: frozenset[str]
    media_off: frozenset[str]
    auto_register: bool

    @classmethod
    def build(
        cls,
        *,
        configured: Iterable[str],
        rows: Iterable[models.MonitoredRoom],
        auto_register: bool,
    ) -> RoomFilter:
        enabled: set[str] = set()
        disabled: set[str] = set()
        media_off: set[str] = set()
        for row in rows:
            names = {row.room_id, *([row.whatsapp_id] if row.whatsapp_id else [])}
            (enabled if row.enabled else disabled).update(names)
            if not row.archive_media:
                media_off.update(names)
        return cls(
            frozenset(configured),
            frozenset(enabled),
            frozenset(disabled),
            frozenset(media_off),
            auto_register,
        )

    def decide(self, room_id: str | None, chat_id: str) -> Decision:
        names = {chat_id, *([room_id] if room_id else [])}
        if names & self.configured:
            return Decision.ARCHIVE
        if names & self.disabled:
            return Decision.SKIP
        if names & self.enabled:
            return Decision.ARCHIVE
        if self.auto_register:
            return Decision.REGISTER
        if not self.configured and not self.enabled:
            return Decision.ARCHIVE
        return Decision.SKIP

    def archive_media(self, room_id: str | None, chat_id: str) -> bool:
        return not ({chat_id, *([room_id] if room_id else [])} & self.media_off)
