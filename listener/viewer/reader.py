"""The viewer's reads of the archive: named queries (``listener/db/sql/viewer_*.sql``), every one
bounded by a limit or by the IDs of one page. SELECT only: a read-only role is enough.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

import asyncpg

from listener.db import queries
from listener.viewer import views

# Above any time a message can have: the cursor of "the newest messages".
END_OF_TIME = datetime(9999, 12, 31, tzinfo=UTC)
START_OF_TIME = datetime(1, 1, 2, tzinfo=UTC)
MIN_SEQ = -(2**63)
MAX_ROOMS = 5000


@dataclass(frozen=True, slots=True)
class Cursor:
    """A place in a chat: the sort key of messages_room_order_idx (time, Synapse's stream
    ordering, event ID)."""

    at: datetime
    seq: int
    event_id: str

    @classmethod
    def of(cls, row: Any) -> Cursor:
        return cls(row["timestamp"], row["seq"], row["event_id"])

    @classmethod
    def start_of(cls, at: datetime) -> Cursor:
        """Before every message at or after ``at``."""
        return cls(at, MIN_SEQ, "")


NEWEST = Cursor(END_OF_TIME, 0, "")
FIRST_WINDOW = timedelta(days=7)
WINDOW_GROWTH = 8
SEARCH_EPSILON = timedelta(microseconds=1)  # the newest message itself is inside the window
# Set for the search's own transaction only.
_BITMAP_ONLY = "SET LOCAL enable_indexscan = off; SET LOCAL enable_seqscan = off"
OLDEST = Cursor.start_of(START_OF_TIME)


def _json(value: Any) -> Any:
    """asyncpg returns jsonb as text unless a codec is set; the pool sets none."""
    return json.loads(value) if isinstance(value, str) else value


@dataclass(frozen=True, slots=True)
class Room:
    room_id: str
    name: str | None
    room_type: str | None
    network: str
    message_count: int
    first_message: datetime | None
    last_message: datetime | None


@dataclass(frozen=True, slots=True)
class MediaFile:
    media_id: int
    storage_path: str
    sha256: str | None
    mimetype: str | None
    filename: str | None
    size_bytes: int | None
    kind: str


def _key(cursor: Cursor) -> tuple[datetime, int, str]:
    return cursor.at, cursor.seq, cursor.event_id


def _room(row: asyncpg.Record) -> Room:
    return Room(
        room_id=row["room_id"],
        name=row["room_name"],
        room_type=row["room_type"],
        network=row["network"],
        message_count=row["message_count"],
        first_message=row["first_message"],
        last_message=row["last_message"],
    )


def _message(row: asyncpg.Record) -> dict[str, Any]:
    out = dict(row)
    out["content"] = _json(out["content"]) or {}
    out["original_content"] = _json(out["original_content"])
    return out


def _media_file(row: asyncpg.Record | None) -> MediaFile | None:
    if row is None:
        return None
    return MediaFile(
        media_id=row["id"],
        storage_path=row["storage_path"],
        sha256=row["sha256"],
        mimetype=row["mimetype"],
        filename=row["original_filename"],
        size_bytes=row["size_bytes"],
        kind=row["kind"],
    )


class ArchiveReader:
    """Reads for the viewer, over a pool of connections to the archive database."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def rooms(self, limit: int = MAX_ROOMS) -> list[Room]:
        rows = await self._pool.fetch(queries.load("viewer_rooms"), limit, None)
        return [_room(r) for r in rows]

    async def room(self, room_id: str) -> Room | None:
        row = await self._pool.fetchrow(queries.load("viewer_rooms"), 1, room_id)
        return _room(row) if row is not None else None

    async def before(self, room_id: str, cursor: Cursor, limit: int) -> list[dict[str, Any]]:
        """Up to ``limit`` messages before the cursor, oldest first."""
        rows = await self._pool.fetch(
            queries.load("viewer_page_before"), room_id, *_key(cursor), limit
        )
        return [_message(r) for r in reversed(rows)]

    async def after(
        self, room_id: str, cursor: Cursor, limit: int, *, inclusive: bool = False
    ) -> list[dict[str, Any]]:
        """Up to ``limit`` messages after the cursor (or from it), oldest first."""
        name = "viewer_page_from" if inclusive else "viewer_page_after"
        rows = await self._pool.fetch(queries.load(name), room_id, *_key(cursor), limit)
        return [_message(r) for r in rows]

    async def thread(self, root_event_id: str, cursor: Cursor, limit: int) -> list[dict[str, Any]]:
        rows = await self._pool.fetch(
            queries.load("viewer_thread"), root_event_id, *_key(cursor), limit
        )
        return [_message(r) for r in rows]

    async def messages(self, event_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        if not event_ids:
            return {}
        rows = await self._pool.fetch(queries.load("viewer_messages_by_id"), list(event_ids))
        return {r["event_id"]: _message(r) for r in rows}

    async def reactions(self, event_ids: Sequence[str]) -> list[asyncpg.Record]:
        if not event_ids:
            return []
        return list(await self._pool.fetch(queries.load("viewer_reactions"), list(event_ids)))

    async def edits(self, event_ids: Sequence[str]) -> list[dict[str, Any]]:
        if not event_ids:
            return []
        rows = await self._pool.fetch(queries.load("viewer_edits"), list(event_ids))
        return [{**dict(r), "new_content": _json(r["new_content"])} for r in rows]

    async def media(self, event_ids: Sequence[str]) -> list[asyncpg.Record]:
        if not event_ids:
            return []
        return list(
            await self._pool.fetch(queries.load("viewer_media_for_events"), list(event_ids))
        )

    async def message_views(
        self, rows: list[dict[str, Any]], *, zone: tzinfo, media_rows: list[Any] | None = None
    ) -> list[views.MessageView]:
        """What a page shows of these messages: with the messages their replies and threads
        point at, their reactions, edit histories and media (``media_rows`` when the caller
        already read them)."""
        ids = [r["event_id"] for r in rows]
        on_page = {r["event_id"]: r for r in rows}
        wanted = {
            target
            for r in rows
            for target in (r["reply_to_event_id"], r["thread_root_event_id"])
            if target
        } - on_page.keys()
        targets = {**on_page, **await self.messages(sorted(wanted))}
        return views.assemble(
            rows,
            zone=zone,
            reply_targets=targets,
            reactions=await self.reactions(ids),
            edits=await self.edits([r["event_id"] for r in rows if r["edit_count"]]),
            media=media_rows if media_rows is not None else await self.media(ids),
        )

    async def media_file(self, media_id: int) -> MediaFile | None:
        return _media_file(await self._pool.fetchrow(queries.load("viewer_media_file"), media_id))

    async def media_by_mxc(self, mxc_url: str) -> MediaFile | None:
        return _media_file(await self._pool.fetchrow(queries.load("viewer_media_by_mxc"), mxc_url))

    async def search(
        self, tsquery: str, room_id: str | None, cursor: Cursor, limit: int
    ) -> list[asyncpg.Record]:
        """Up to ``limit`` matches before ``cursor``, newest first.

        Newest first over millions of messages is a trap for the planner: a common word has
        hundreds of thousands of matches to fetch and sort, a rare one sends a time-ordered
        scan through a whole chat re-parsing every message. So the search walks back in time
        windows (a week, then 8 weeks, 64 weeks, …, then everything older), each one the
        search index's matches intersected with a time range (bitmap scans only, never a scan
        that re-parses messages), until it has ``limit``: a common word costs about a week of
        matches, a rare one a few cheap index lookups."""
        sql = queries.load("viewer_search")
        async with self._pool.acquire() as conn, conn.transaction(readonly=True):
            await conn.execute(_BITMAP_ONLY)
            upper = cursor
            if upper.at >= END_OF_TIME:
                newest = await conn.fetchval(queries.load("viewer_newest"), room_id)
                if newest is None:
                    return []
                upper = Cursor(newest + SEARCH_EPSILON, 0, "")
            found: list[asyncpg.Record] = []
            window = FIRST_WINDOW
            while len(found) < limit:
                lower = upper.at - window if upper.at - START_OF_TIME > window else START_OF_TIME
                found += await conn.fetch(
                    sql, tsquery, room_id, *_key(upper), lower, limit - len(found)
                )
                if lower <= START_OF_TIME:
                    break
                upper = Cursor.start_of(lower)  # strictly older than this window
                window *= WINDOW_GROWTH
            return found
