"""The export's own reads of the archive (named ``export_*`` queries); the messages themselves
come through the viewer's :class:`~listener.viewer.reader.ArchiveReader`."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg

from listener.db import queries


class ExportReader:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def now(self) -> datetime:
        value: datetime = await self._pool.fetchval(queries.load("archive_now"))
        return value

    async def counts(
        self, unit: str, room_id: str, zone: str, start: datetime, end: datetime
    ) -> dict[datetime, int]:
        """Messages of ``room_id`` per ``unit`` (month, day or hour) in [start, end)."""
        name = {"month": "export_month_counts", "day": "export_day_counts"}.get(
            unit, "export_hour_counts"
        )
        rows = await self._pool.fetch(queries.load(name), room_id, zone, start, end)
        return {r["at"]: r["n"] for r in rows}

    async def changed_months(self, since: datetime, zone: str) -> set[tuple[str, datetime]]:
        rows = await self._pool.fetch(queries.load("export_changed_months"), since, zone)
        return {(r["room_id"], r["month"]) for r in rows if r["room_id"] is not None}

    async def reactions(self, event_ids: Sequence[str]) -> list[dict[str, Any]]:
        if not event_ids:
            return []
        rows = await self._pool.fetch(queries.load("export_reactions"), list(event_ids))
        return [dict(r) for r in rows]
