"""The PostgreSQL sink: the archive in a plain PostgreSQL database (the embedded default)."""

from __future__ import annotations

import functools
import json
import re
from datetime import datetime
from typing import Any

import asyncpg

from listener.core import archive_rows, errors, models
from listener.db import connect, queries
from listener.schema import migrate
from listener.sinks import protocol


def _messages_json(messages: list[models.ArchivedMessage]) -> str:
    """The batch as one JSON array named by the table's columns (json_populate_recordset).

    Content is spliced in as already-serialised JSON text: it was serialised once by the
    enrichment and must not be parsed and dumped again.
    """
    rows = []
    for m in messages:
        head = json.dumps(
            archive_rows.message_scalars(m), ensure_ascii=False, separators=(",", ":")
        )
        rows.append(
            f'{head[:-1]},"content":{m.content_json or "null"},'
            f'"original_content":{m.original_content_json or "null"},'
            f'"encrypted_content":{m.encrypted_content_json or "null"}}}'
        )
    return "[" + ",".join(rows) + "]"


def _edit_columns(edits: list[models.ArchivedEdit]) -> list[list[Any]]:
    return [
        [e.edit_event_id for e in edits],
        [e.message_event_id for e in edits],
        [e.edit_number for e in edits],
        [e.sender for e in edits],
        [e.new_content_json for e in edits],
        [e.content_raw for e in edits],
        [e.body for e in edits],
        [e.edited_at for e in edits],
    ]


def _reaction_columns(reactions: list[models.ArchivedReaction]) -> list[list[Any]]:
    return [
        [r.reaction_event_id for r in reactions],
        [r.message_event_id for r in reactions],
        [r.room_id for r in reactions],
        [r.sender for r in reactions],
        [r.emoji for r in reactions],
        [r.timestamp for r in reactions],
        [r.removed_at for r in reactions],
        [r.redaction_event_id for r in reactions],
    ]


def _failure_columns(failures: list[models.Failure]) -> list[list[Any]]:
    return [
        [f.kind for f in failures],
        [f.subject for f in failures],
        [f.reason for f in failures],
        [f.bridge_rowid for f in failures],
        [f.event_id for f in failures],
        [f.room_id for f in failures],
        [json.dumps(f.detail) if f.detail is not None else None for f in failures],
    ]


def _room_columns(rooms: list[models.MonitoredRoom]) -> list[list[Any]]:
    return [
        [r.room_id for r in rooms],
        [r.whatsapp_id for r in rooms],
        [r.room_name for r in rooms],
        [r.enabled for r in rooms],
        [r.archive_media for r in rooms],
    ]


def _dedupe_messages(messages: list[models.ArchivedMessage]) -> list[models.ArchivedMessage]:
    # ON CONFLICT cannot touch the same row twice in one statement; keep the newest rowid.
    by_event: dict[str, models.ArchivedMessage] = {}
    for message in messages:
        known = by_event.get(message.event_id)
        if known is None or (message.bridge_rowid or 0) >= (known.bridge_rowid or 0):
            by_event[message.event_id] = message
    return list(by_event.values())


_COMBINED_PARTS = (
    ("messages", "sink_upsert_messages"),
    ("edits", "sink_upsert_edits"),
    ("reactions", "sink_upsert_reactions"),
    ("rooms", "sink_register_rooms"),
    ("cursor", "sink_save_cursor"),
)
_PARAMETER = re.compile(r"\$(\d+)")


@functools.cache
def combined_write_query() -> str:
    """The per-table upserts as data-modifying CTEs of one statement, parameters renumbered.

    Built from the same query files the multi-statement path runs, so there is one source
    of truth for each upsert. PostgreSQL runs every data-modifying CTE exactly once, to
    completion, whether or not the final SELECT reads it.
    """
    ctes = []
    offset = 0
    for name, query in _COMBINED_PARTS:
        lines = queries.load(query).splitlines()
        body = "\n".join(line for line in lines if not line.lstrip().startswith("--"))
        count = max(int(n) for n in _PARAMETER.findall(body))
        body = _renumber(body, offset)
        ctes.append(f"write_{name} AS (\n{body.strip()}\n)")
        offset += count
    return "WITH " + ",\n".join(ctes) + "\nSELECT 1"


def _renumber(sql: str, offset: int) -> str:
    def shift(match: re.Match[str]) -> str:
        return f"${int(match.group(1)) + offset}"

    return _PARAMETER.sub(shift, sql)


def _combined_args(batch: models.ArchiveBatch) -> list[Any]:
    messages = _dedupe_messages(batch.messages)
    edits = list({e.edit_event_id: e for e in batch.edits}.values())
    reactions = list({r.reaction_event_id: r for r in batch.reactions}.values())
    rooms = list({r.room_id: r for r in batch.new_rooms}.values())
    return [
        _messages_json(messages),
        *_edit_columns(edits),
        *_reaction_columns(reactions),
        *_room_columns(rooms),
        protocol.CURSOR_KEY,
        batch.cursor,
    ]


class PostgresSink:
    name = "postgres"

    def __init__(self, dsn: str, *, pool_size: int = 4) -> None:
        self._dsn = dsn
        self._pool_size = pool_size
        self._pool: asyncpg.Pool | None = None

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise errors.SinkError("the PostgreSQL sink is not open")
        return self._pool

    async def open(self) -> None:
        self._pool = await connect.create_pool(
            self._dsn,
            application_name="archiver-db:sink",
            max_size=self._pool_size,
            error=errors.SinkUnavailable,
        )
        async with self._pool.acquire() as conn:
            missing = await migrate.pending(conn)
        if missing:
            await self.close()
            raise errors.SchemaError(
                f"the archive database is not migrated (pending: {', '.join(missing)}); "
                "run `archiver-db migrate`"
            )

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def write(self, batch: models.ArchiveBatch) -> None:
        try:
            if batch.failures or batch.resolved_subjects:
                async with self.pool.acquire() as conn, conn.transaction():
                    await self._write(conn, batch)
            else:
                # The hot path: one statement, one round trip, atomic on its own.
                await self.pool.execute(combined_write_query(), *_combined_args(batch))
        except (*connect.CONNECTION_ERRORS, asyncpg.PostgresConnectionError) as exc:
            raise errors.SinkUnavailable(f"archive write failed: {connect.describe(exc)}") from None
        except (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError) as exc:
            raise errors.RowRejected(
                f"archive rejected the batch: {connect.describe(exc)}"
            ) from None
        except asyncpg.PostgresError as exc:
            raise errors.SinkUnavailable(f"archive write failed: {connect.describe(exc)}") from None

    async def _write(self, conn: asyncpg.Connection, batch: models.ArchiveBatch) -> None:
        if batch.messages:
            rows = _messages_json(_dedupe_messages(batch.messages))
            await conn.execute(queries.load("sink_upsert_messages"), rows)
        if batch.edits:
            edits = list({e.edit_event_id: e for e in batch.edits}.values())
            await conn.execute(queries.load("sink_upsert_edits"), *_edit_columns(edits))
        if batch.reactions:
            reactions = list({r.reaction_event_id: r for r in batch.reactions}.values())
            await conn.execute(queries.load("sink_upsert_reactions"), *_reaction_columns(reactions))
        # Resolve before recording: a failure re-recorded in this same batch stays open.
        if batch.resolved_subjects:
            await conn.execute(queries.load("sink_resolve_failures"), batch.resolved_subjects)
        if batch.failures:
            failures = list({(f.kind, f.subject): f for f in batch.failures}.values())
            await conn.execute(queries.load("sink_upsert_failures"), *_failure_columns(failures))
        if batch.new_rooms:
            rooms = list({r.room_id: r for r in batch.new_rooms}.values())
            await conn.execute(queries.load("sink_register_rooms"), *_room_columns(rooms))
        if batch.cursor is not None:
            await conn.execute(queries.load("sink_save_cursor"), protocol.CURSOR_KEY, batch.cursor)

    async def load_state(self, key: str) -> Any | None:
        records = await self._fetch("sink_load_state", key)
        value = records[0]["value"] if records else None
        return json.loads(value) if value is not None else None

    async def save_state(self, key: str, value: Any) -> None:
        if key == protocol.CURSOR_KEY:
            await self.write(models.ArchiveBatch(cursor=int(value["rowid"])))
            return
        await self._fetch("sink_save_state", key, json.dumps(value))

    async def monitored_rooms(self) -> list[models.MonitoredRoom]:
        records = await self._fetch("sink_monitored_rooms")
        return [
            models.MonitoredRoom(
                room_id=r["room_id"],
                enabled=r["enabled"],
                archive_media=r["archive_media"],
                whatsapp_id=r["whatsapp_id"],
                room_name=r["room_name"],
            )
            for r in records
        ]

    async def open_failures(self, kinds: list[str]) -> list[models.Failure]:
        records = await self._fetch("sink_open_failures", kinds)
        return [
            models.Failure(
                kind=r["kind"],
                subject=r["subject"],
                reason=r["reason"],
                bridge_rowid=r["bridge_rowid"],
                event_id=r["event_id"],
                room_id=r["room_id"],
                detail=json.loads(r["detail"]) if r["detail"] else None,
            )
            for r in records
        ]

    async def existing_event_ids(self, event_ids: list[str]) -> set[str]:
        records = await self._fetch("sink_existing_events", event_ids)
        return {r["event_id"] for r in records}

    async def media_catchup(
        self, since: datetime, message_types: list[str], limit: int
    ) -> list[dict[str, Any]]:
        records = await self._fetch("sink_media_catchup", since, message_types, limit)
        return [dict(r) for r in records]

    async def known_rooms(self) -> set[str]:
        return {r["room_id"] for r in await self._fetch("sink_known_rooms")}

    async def undecrypted(self, after_event_id: str, limit: int) -> list[tuple[str, str, str]]:
        records = await self._fetch("sink_undecrypted", after_event_id, limit)
        return [(r["event_id"], r["room_id"], r["megolm_session_id"]) for r in records]

    async def _fetch(self, query: str, *args: object) -> list[asyncpg.Record]:
        return await connect.fetch(
            self.pool,
            queries.load(query),
            *args,
            label=f"archive query {query}",
            error=errors.SinkUnavailable,
        )

    async def ping(self) -> None:
        try:
            await self.pool.fetchval("SELECT 1")
        except (*connect.CONNECTION_ERRORS, asyncpg.PostgresError) as exc:
            raise errors.SinkUnavailable(f"archive unreachable: {connect.describe(exc)}") from None
