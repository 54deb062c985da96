"""The media catch-up: media of archived messages that never reached the media archiver.

The pipeline hands a message's media to the media archiver only after the message is durable,
through an in-memory queue. A crash in between would leave the message archived and its media
unknown. This pass finds archived media messages without any media row (since a watermark kept
in ``archiver_state``) and archives their media, synchronously. It runs at start and every
``MEDIA_CATCHUP_INTERVAL_S``.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from listener.core import roomfilter
from listener.media import archiver as media
from listener.media import refs

logger = logging.getLogger(__name__)

WATERMARK_KEY = "media_watermark"
MEDIA_MESSAGE_TYPES = ["m.image", "m.video", "m.audio", "m.file", "m.sticker"]
# Rows are written by several workers at once: look back a little past the watermark.
SAFETY = timedelta(minutes=5)


class CatchupSink(Protocol):
    async def load_state(self, key: str) -> Any | None: ...

    async def save_state(self, key: str, value: Any) -> None: ...

    async def media_catchup(
        self, since: datetime, message_types: list[str], limit: int
    ) -> list[dict[str, Any]]: ...


class MediaCatchup:
    def __init__(
        self,
        *,
        sink: CatchupSink,
        archiver: media.MediaArchiver,
        rooms: Any,
        page_size: int = 500,
    ) -> None:
        self._sink = sink
        self._archiver = archiver
        self._rooms = rooms  # pipeline.RoomDirectory: .current is a RoomFilter
        self._page_size = page_size

    async def run_once(self) -> int:
        """Archive the media of messages that have none recorded; returns how many messages."""
        state = await self._sink.load_state(WATERMARK_KEY)
        since = datetime.fromisoformat(state["updated_at"]) - SAFETY if state else _EPOCH
        done = 0
        newest = since
        while True:
            rows = await self._sink.media_catchup(since, MEDIA_MESSAGE_TYPES, self._page_size)
            messages = [m for m in (self._message(row) for row in rows) if m is not None]
            if messages:
                await self._archiver.process(messages)
            done += len(messages)
            if rows:
                newest = max(newest, rows[-1]["updated_at"])
            if len(rows) < self._page_size:
                break
            since = rows[-1]["updated_at"]
        if newest > since or state is None:
            await self._sink.save_state(WATERMARK_KEY, {"updated_at": newest.isoformat()})
        if done:
            logger.warning(
                "media catch-up archived the media of %d messages",
                done,
                extra={"action": "media_catchup"},
            )
        return done

    def _message(self, row: dict[str, Any]) -> media.MediaMessage | None:
        try:
            content = json.loads(row["content"])
        except (TypeError, ValueError):
            return None
        if not isinstance(content, dict):
            return None
        room_filter: roomfilter.RoomFilter = self._rooms.current
        allowed = room_filter.archive_media(row["room_id"], row["whatsapp_chat_id"] or "")
        sticker = row["message_type"] == refs.STICKER
        event_type = refs.STICKER if sticker else refs.ROOM_MESSAGE
        return media.MediaMessage(row["event_id"], event_type, content, row["room_id"], allowed)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
