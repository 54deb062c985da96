"""Media rows and analysis jobs in the PostgreSQL archive (uses the sink's pool)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import asyncpg

from listener.core import errors
from listener.db import connect, queries
from listener.sinks import media_protocol

T = TypeVar("T")


def _row_columns(rows: Sequence[media_protocol.MediaRow]) -> list[list[Any]]:
    return [
        [r.event_id for r in rows],
        [r.mxc_url for r in rows],
        [r.kind for r in rows],
        [r.status for r in rows],
        [r.status_reason for r in rows],
        [r.room_id for r in rows],
        [r.original_filename for r in rows],
        [r.mimetype for r in rows],
        [r.size_bytes for r in rows],
        [r.sha256 for r in rows],
        [r.source_sha256 for r in rows],
        [r.storage_path for r in rows],
        [r.width for r in rows],
        [r.height for r in rows],
        [r.duration_ms for r in rows],
        [r.encrypted for r in rows],
        [r.uploaded_at for r in rows],
    ]


def _state(record: asyncpg.Record) -> media_protocol.MediaState:
    return media_protocol.MediaState(
        id=record["id"],
        event_id=record["event_id"],
        mxc_url=record["mxc_url"],
        kind=record["kind"],
        status=record["status"],
        attempts=record["attempts"],
        room_id=record["room_id"],
        sha256=record["sha256"],
        storage_path=record["storage_path"],
    )


class PgMediaSink:
    """:class:`~listener.sinks.media_protocol.MediaSink` on the PostgreSQL archive."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def _guard(self, what: str, action: Callable[[], Awaitable[T]]) -> T:
        try:
            return await action()
        except (*connect.CONNECTION_ERRORS, asyncpg.PostgresConnectionError) as exc:
            raise errors.SinkUnavailable(f"{what} failed: {connect.describe(exc)}") from None
        except (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError) as exc:
            raise errors.RowRejected(f"{what} rejected: {connect.describe(exc)}") from None
        except asyncpg.PostgresError as exc:
            raise errors.SinkUnavailable(f"{what} failed: {connect.describe(exc)}") from None

    async def media_states(
        self, keys: Sequence[media_protocol.MediaKey]
    ) -> dict[media_protocol.MediaKey, media_protocol.MediaState]:
        if not keys:
            return {}
        events, mxcs = [k[0] for k in keys], [k[1] for k in keys]
        records = await self._guard(
            "media state read",
            lambda: self._pool.fetch(queries.load("sink_media_states"), events, mxcs),
        )
        return {(r["event_id"], r["mxc_url"]): _state(r) for r in records}

    async def upsert_media(
        self, rows: Sequence[media_protocol.MediaRow]
    ) -> dict[media_protocol.MediaKey, int]:
        # ON CONFLICT cannot touch one row twice in a statement: the last write per key wins.
        unique = list({row.key: row for row in rows}.values())
        if not unique:
            return {}

        async def write() -> list[asyncpg.Record]:
            async with self._pool.acquire() as conn, conn.transaction():
                await conn.execute(queries.load("sink_media_upsert"), *_row_columns(unique))
                # A second statement sees rows a concurrent writer committed meanwhile.
                result: list[asyncpg.Record] = await conn.fetch(
                    queries.load("sink_media_states"),
                    [r.event_id for r in unique],
                    [r.mxc_url for r in unique],
                )
                return result

        records = await self._guard("media upsert", write)
        return {(r["event_id"], r["mxc_url"]): r["id"] for r in records}

    async def ensure_analysis_jobs(
        self, media_ids: Sequence[int], job_type: str = media_protocol.ANALYZE
    ) -> int:
        if not media_ids:
            return 0
        status = await self._guard(
            "analysis job insert",
            lambda: self._pool.execute(
                queries.load("sink_media_ensure_jobs"), sorted(set(media_ids)), job_type
            ),
        )
        return int(str(status).rsplit(" ", 1)[-1])

    async def retry_candidates(
        self, statuses: Sequence[media_protocol.Status], *, older_than_s: float, limit: int
    ) -> list[media_protocol.MediaState]:
        records = await self._guard(
            "media retry scan",
            lambda: self._pool.fetch(
                queries.load("sink_media_retry_candidates"),
                list(statuses),
                float(older_than_s),
                limit,
            ),
        )
        return [_state(r) for r in records]
