"""Read-only queries against Synapse's database."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from listener.core import errors, models
from listener.db import connect, queries


@dataclass(frozen=True, slots=True)
class StreamEvent:
    """One event of the reconciliation scan (no edits or redaction attached)."""

    event_id: str
    room_id: str
    event_type: str
    stream_ordering: int
    received_ts_ms: int
    json_text: str


def _event(r: asyncpg.Record) -> models.SynapseEvent:
    redaction = None
    if r["redaction_event_id"] is not None:
        redaction = models.Redaction(r["redaction_event_id"], r["event_id"], r["redaction_ts"] or 0)
    return models.SynapseEvent(
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
        edits=tuple(_edit(item) for item in json.loads(r["edits"])) if r["edits"] else (),
        redaction=redaction,
    )


def _edit(item: dict[str, Any]) -> models.SynapseEvent:
    return models.SynapseEvent(
        event_id=item["event_id"],
        room_id=item["room_id"],
        event_type=item["type"],
        sender=item["sender"],
        origin_server_ts_ms=item["origin_server_ts"] or 0,
        stream_ordering=item["stream_ordering"] or 0,
        json_text=item["json"],
        outlier=False,
        rejection_reason=None,
        received_ts_ms=item["received_ts"],
    )


class SynapseSource:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def _fetch(self, query: str, *args: object) -> list[asyncpg.Record]:
        return await connect.fetch(
            self._pool,
            queries.load(query),
            *args,
            label=f"synapse query {query}",
            error=errors.SourceError,
        )

    async def events(self, event_ids: Sequence[str]) -> dict[str, models.SynapseEvent]:
        """The events among ``event_ids`` that Synapse has, by event ID."""
        if not event_ids:
            return {}
        records = await self._fetch("synapse_events", list(event_ids))
        return {r["event_id"]: _event(r) for r in records}

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

    async def stream(
        self, after: int, *, room_ids: Sequence[str], types: Sequence[str], limit: int
    ) -> list[StreamEvent]:
        """Events after stream position ``after`` in these rooms, in persist order."""
        if not room_ids:
            return []
        records = await self._fetch("synapse_stream", after, list(room_ids), list(types), limit)
        return [
            StreamEvent(
                event_id=r["event_id"],
                room_id=r["room_id"],
                event_type=r["type"],
                stream_ordering=r["stream_ordering"],
                received_ts_ms=r["received_ts"] or 0,
                json_text=r["json"],
            )
            for r in records
        ]

    async def max_stream_ordering(self) -> int:
        """The newest persisted stream position."""
        records = await self._fetch("synapse_max_stream")
        return int(records[0]["max_stream"])

    async def ping(self) -> None:
        await self._fetch("synapse_events", [])
