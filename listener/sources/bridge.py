"""Read-only queries against the bridge database (mautrix bridgev2 schema)."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import asyncpg

from listener.core import enrich, errors, models, tracker
from listener.core.networks import schema as bridge_schema
from listener.db import connect, queries

_BY_ROWID = "WHERE m.rowid = ANY($1::bigint[])"
_BY_MXID = "WHERE m.mxid = ANY($1::text[])"


@functools.cache
def _rows_by_mxid_sql() -> str:
    """bridge_rows.sql selecting by Matrix event ID (for the reconciliation pass): the same
    joins, so the two can never drift apart."""
    sql = queries.load("bridge_rows")
    if _BY_ROWID not in sql:
        raise AssertionError("bridge_rows.sql no longer filters by rowid as expected")
    return sql.replace(_BY_ROWID, _BY_MXID)


def _row(record: asyncpg.Record) -> models.BridgeRow:
    return models.BridgeRow(
        rowid=record["rowid"],
        bridge_id=record["bridge_id"],
        message_id=record["id"],
        part_id=record["part_id"],
        mxid=record["mxid"],
        chat_id=record["room_id"],
        room_receiver=record["room_receiver"],
        sender_id=record["sender_id"],
        sender_mxid=record["sender_mxid"],
        timestamp_ns=record["timestamp"],
        thread_root_id=record["thread_root_id"],
        reply_to_id=record["reply_to_id"],
        reply_to_mxid=record["reply_to_mxid"],
        thread_root_mxid=record["thread_root_mxid"],
        metadata_json=record["metadata"],
        portal_mxid=record["portal_mxid"],
        portal_name=record["portal_name"],
        room_type=record["room_type"],
        ghost_name=record["ghost_name"],
    )


class BridgeSource:
    """The bridge database, read through a small pool."""

    def __init__(self, pool: asyncpg.Pool, *, bridge_id: str) -> None:
        self._pool = pool
        self._bridge_id = bridge_id

    async def _fetch(self, query: str, *args: object) -> list[asyncpg.Record]:
        return await connect.fetch(
            self._pool,
            _rows_by_mxid_sql() if query == "bridge_rows_by_mxid" else queries.load(query),
            *args,
            label=f"bridge query {query}",
            error=errors.SourceError,
        )

    async def rows(self, rowids: Sequence[int]) -> list[models.BridgeRow]:
        """The rows among ``rowids`` that exist now (a deleted row is simply absent)."""
        records = await self._fetch("bridge_rows", list(rowids), self._bridge_id)
        return [_row(r) for r in records]

    async def rows_by_mxid(self, mxids: Sequence[str]) -> list[models.BridgeRow]:
        records = await self._fetch("bridge_rows_by_mxid", list(mxids), self._bridge_id)
        return [_row(r) for r in records]

    async def room_info(self, room_ids: Sequence[str]) -> dict[str, enrich.RoomInfo]:
        records = await self._fetch("bridge_portals_by_mxid", self._bridge_id, list(room_ids))
        return {
            r["mxid"]: enrich.RoomInfo(r["id"], r["name"] or None, r["room_type"]) for r in records
        }

    async def rowids_after(
        self, cursor: int, *, limit: int, since_ns: int | None = None
    ) -> list[int]:
        if since_ns is None:
            records = await self._fetch("bridge_rowids_after", cursor, self._bridge_id, limit)
        else:
            records = await self._fetch(
                "bridge_rowids_after_since", cursor, self._bridge_id, limit, since_ns
            )
        return [r["rowid"] for r in records]

    async def rowids_after_with_snapshot(
        self, cursor: int, *, limit: int
    ) -> tuple[list[int], tracker.Snapshot]:
        """:meth:`rowids_after`, and the snapshot the statement read under."""
        records = await self._fetch("bridge_rowids_after_snapshot", cursor, self._bridge_id, limit)
        record = records[0]
        return list(record["rowids"]), tracker.Snapshot(record["xmin"], record["xmax"])

    async def rowid_sequence_cache(self) -> int | None:
        """The cache size of ``message.rowid``'s sequence (None if it cannot be read)."""
        records = await self._fetch("bridge_rowid_sequence_cache")
        return int(records[0]["cache"]) if records else None

    async def rowids_between(self, lo: int, hi: int, *, limit: int) -> list[int]:
        """The existing rowids in ``[lo, hi]``, ascending, at most ``limit`` of them."""
        records = await self._fetch("bridge_rowids_between", lo, hi, self._bridge_id, limit)
        return [r["rowid"] for r in records]

    async def count_after(self, cursor: int, *, since_ns: int | None = None) -> int:
        records = await self._fetch("bridge_count_after", cursor, self._bridge_id, since_ns)
        return int(records[0]["n"])

    async def max_rowid(self) -> int:
        records = await self._fetch("bridge_max_rowid")
        return int(records[0]["max_rowid"])

    async def portals(self) -> list[models.MonitoredRoom]:
        records = await self._fetch("bridge_portals", self._bridge_id)
        return [
            models.MonitoredRoom(
                room_id=r["mxid"], whatsapp_id=r["id"], room_name=r["name"] or None
            )
            for r in records
        ]

    async def ping(self) -> None:
        await self._fetch("bridge_max_rowid")

    async def trigger_status(self, channel: str) -> TriggerStatus:
        return TriggerStatus(await self._fetch("bridge_trigger_status"), channel)


INSERT_TRIGGER = "archiver_db_message_insert"


class TriggerStatus:
    """What the bridge database says about our NOTIFY trigger."""

    def __init__(self, records: list[asyncpg.Record], channel: str) -> None:
        self.names = [r["name"] for r in records]
        # New rows are what matter for latency: the INSERT trigger must be there and enabled.
        self.enabled = any(
            r["name"] == INSERT_TRIGGER and r["enabled"] and r["channel"] == channel
            for r in records
        )
        self.channels = sorted({r["channel"] for r in records})

    @property
    def present(self) -> bool:
        return bool(self.names)


async def read_schema(db: asyncpg.Pool | asyncpg.Connection) -> bridge_schema.SchemaFacts:
    """What the catalog says of the bridge database, and its ``database_owner`` row when the
    archiver's role may read it (sql/grants.sql does not grant it: the tables suffice)."""
    records = await db.fetch(queries.load("bridge_schema"))
    columns = {r["table_name"]: frozenset(r["columns"]) for r in records}
    owner = None
    readable = {r["table_name"] for r in records if r["readable"]}
    if (
        bridge_schema.OWNER_TABLE in readable
        and {"key", "owner"} <= columns[bridge_schema.OWNER_TABLE]
    ):
        owner = await db.fetchval(queries.load("bridge_database_owner"))
    return bridge_schema.SchemaFacts(columns, owner)


async def check_schema(pool: asyncpg.Pool) -> bridge_schema.Verdict:
    """The bridge database's verdict; SchemaError when it is not bridgev2 (a legacy bridge's
    database would otherwise fail every query, and no retry can fix that), SourceError while it
    cannot be read or has no tables at all."""
    try:
        facts = await read_schema(pool)
    except (*connect.CONNECTION_ERRORS, asyncpg.PostgresError) as exc:
        raise errors.SourceError(
            f"bridge query bridge_schema failed: {connect.describe(exc)}"
        ) from None
    if not facts.columns:
        # A bridge that never started has not created its tables yet: wait for it, as for a
        # database that is down (a legacy schema, below, will never become bridgev2 by waiting).
        raise errors.SourceError("the bridge database has no tables yet (has the bridge run?)")
    verdict = bridge_schema.check(facts)
    if not verdict.bridgev2:
        raise errors.SchemaError(f"the bridge database is {verdict.problem}")
    return verdict
