"""Read-only queries against Synapse's database."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import asyncpg

from listener import errors, models, named_queries, pgconnect


class SynapseSource:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def _fetch(self, query: str, *args: object) -> list[asyncpg.Record]:
        try:
            result: list[asyncpg.Record] = await self._pool.fetch(named_queries.load(query), *args)
        except (*pgconnect.CONNECTION_ERRORS, asyncpg.PostgresError) as exc:
            raise errors.SourceError(
                f"synapse query {query} failed: {pgconnect.describe(exc)}"
            ) from None
        return result

    async def events(self, event_ids: Sequence[str]) -> dict[str, models.SynapseEvent]:
        """The events among ``event_ids`` that Synapse has, by event ID."""
        if not event_ids:
            return {}
        records = await self._fetch("synapse_events", list(event_ids))
        return {
            r["event_id"]: models.SynapseEvent(
                event_id=r["event_id"],
                room_id=r["room_id"],
                event_type=r["type"],
                sender=r["sender"],
                origin_server_ts_ms=r["origin_server_ts"] or 0,
                stream_ordering=r["stream_ordering"] or 0,
                json_text=r["json"],
                outlier=bool(r["outlier"]),
                rejection_reason=r["rejection_reason"],
                internal_metadata=r["internal_metadata"],
                received_ts_ms=r["received_ts"],
            )
            for r in records
        }

    async def display_names(self, pairs: Iterable[tuple[str, str]]) -> dict[tuple[str, str], str]:
        """Latest membership display name per ``(room_id, user_id)`` asked for."""
        wanted = set(pairs)
        if not wanted:
            return {}
        rooms = sorted({room for room, _ in wanted})
        users = sorted({user for _, user in wanted})
        records = await self._fetch("synapse_display_names", users, rooms)
        return {
            (r["room_id"], r["user_id"]): r["display_name"]
            for r in records
            if (r["room_id"], r["user_id"]) in wanted and r["display_name"]
        }

    async def ping(self) -> None:
        await self._fetch("synapse_events", [])
