"""``archiver-db verify``: per room, bridge messages against the archive over a time range.

Every bridge message part in a room the archiver covers should be in the archive under its
Matrix event ID. The ones that are not are listed; ``--repair`` archives them through the
normal :class:`~listener.flow.pipeline.Processor`. Archive rows whose bridge row is gone (deleted in
WhatsApp, chat removed) are counted as ``archive only``: expected, not an error.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg

from listener import settings
from listener.core import errors, models, roomfilter
from listener.db import connect as pgconnect
from listener.db import queries

ID_CHUNK = 10_000


@dataclass(frozen=True, slots=True)
class BridgeMessage:
    rowid: int
    event_id: str
    room_id: str  # the Matrix room ID, or the WhatsApp chat ID while the portal has no room
    room_name: str | None
    chat_id: str
    portal_mxid: str | None


@dataclass
class RoomTally:
    room_id: str
    room_name: str | None = None
    bridge: int = 0
    archived: int = 0
    archive_total: int = 0
    encrypted: int = 0  # archived messages still ciphertext (not, or not yet, decrypted)
    missing: list[BridgeMessage] = field(default_factory=list)

    @property
    def archive_only(self) -> int:
        return max(0, self.archive_total - self.archived)


@dataclass
class Report:
    rooms: list[RoomTally]
    skipped_rooms: int = 0

    @property
    def missing(self) -> list[BridgeMessage]:
        return [m for room in self.rooms for m in room.missing]

    def as_json(self) -> dict[str, Any]:
        return {
            "missing": len(self.missing),
            "skipped_rooms": self.skipped_rooms,
            "rooms": [
                {
                    "room_id": r.room_id,
                    "room_name": r.room_name,
                    "bridge": r.bridge,
                    "archived": r.archived,
                    "archive_only": r.archive_only,
                    "still_encrypted": r.encrypted,
                    "missing": [{"rowid": m.rowid, "event_id": m.event_id} for m in r.missing],
                }
                for r in self.rooms
            ],
        }


def tally(
    rows: Iterable[BridgeMessage],
    archived_ids: set[str],
    archive_counts: dict[str, int],
    room_filter: roomfilter.RoomFilter,
    encrypted_counts: dict[str, int] | None = None,
) -> Report:
    """Count per room (pure)."""
    rooms: dict[str, RoomTally] = {}
    skipped: set[str] = set()
    for row in rows:
        if room_filter.decide(row.portal_mxid, row.chat_id) is roomfilter.Decision.SKIP:
            skipped.add(row.room_id)
            continue
        room = rooms.setdefault(row.room_id, RoomTally(row.room_id, row.room_name))
        room.bridge += 1
        if row.event_id in archived_ids:
            room.archived += 1
        else:
            room.missing.append(row)
    for room_id, n in archive_counts.items():
        if room_id not in skipped:
            rooms.setdefault(room_id, RoomTally(room_id)).archive_total = n
    for room_id, n in (encrypted_counts or {}).items():
        if room_id in rooms:
            rooms[room_id].encrypted = n
    ordered = sorted(rooms.values(), key=lambda r: (-len(r.missing), r.room_id))
    return Report(rooms=ordered, skipped_rooms=len(skipped))


def render(report: Report, *, max_listed: int = 20) -> str:
    header = ("room", "name", "bridge", "archived", "missing", "archive only")
    table = [header] + [
        (
            r.room_id,
            (r.room_name or "")[:30],
            str(r.bridge),
            str(r.archived),
            str(len(r.missing)),
            str(r.archive_only),
        )
        for r in report.rooms
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in table
    ]
    missing = report.missing
    for message in missing[:max_listed]:
        lines.append(
            f"missing: {message.event_id} (bridge rowid {message.rowid}, {message.room_id})"
        )
    if len(missing) > max_listed:
        lines.append(f"... and {len(missing) - max_listed} more (--json lists them all)")
    for room in report.rooms:
        if room.encrypted:
            lines.append(
                f"still encrypted: {room.encrypted} archived messages in {room.room_id} "
                "(see `archiver-db doctor`: BRIDGE_PICKLE_KEY, late keys)"
            )
    total = sum(r.bridge for r in report.rooms)
    verdict = f"{len(missing)} of {total} bridge messages missing from the archive"
    lines.append(verdict if missing else f"all {total} bridge messages are archived")
    return "\n".join(lines)


async def compare(
    config: settings.Settings, *, since: datetime | None, until: datetime | None
) -> Report:
    if config.archive_db_url is None:
        raise errors.ConfigError("verify reads the archive through ARCHIVE_DB_URL; it is not set")
    bridge = await pgconnect.connect(
        config.whatsapp_db_url.get_secret_value(), application_name="archiver-db:verify"
    )
    try:
        archive = await pgconnect.connect(
            config.archive_db_url.get_secret_value(),
            application_name="archiver-db:verify",
            error=errors.SinkUnavailable,
        )
        try:
            return await _compare(bridge, archive, config, since, until)
        finally:
            await archive.close()
    finally:
        await bridge.close()


async def _compare(
    bridge: asyncpg.Connection,
    archive: asyncpg.Connection,
    config: settings.Settings,
    since: datetime | None,
    until: datetime | None,
) -> Report:
    records = await _fetch(
        bridge, "verify_bridge_rows", config.bridge_id, _ns(since), _ns(until), what="bridge"
    )
    rows = [
        BridgeMessage(
            rowid=r["rowid"],
            event_id=r["mxid"],
            room_id=r["portal_mxid"] or r["chat_id"],
            room_name=r["portal_name"] or None,
            chat_id=r["chat_id"],
            portal_mxid=r["portal_mxid"],
        )
        for r in records
    ]
    archived: set[str] = set()
    ids = [row.event_id for row in rows]
    for start in range(0, len(ids), ID_CHUNK):
        found = await _fetch(archive, "verify_archived_ids", ids[start : start + ID_CHUNK])
        archived.update(r["event_id"] for r in found)
    counts = await _fetch(archive, "verify_archive_counts", since, until)
    room_rows = await _fetch(archive, "sink_monitored_rooms")
    room_filter = roomfilter.RoomFilter.build(
        configured=config.monitored_rooms,
        rows=[_monitored(r) for r in room_rows],
        auto_register=config.auto_register_rooms,
    )
    return tally(
        rows,
        archived,
        {r["room_id"]: r["n"] for r in counts if r["room_id"]},
        room_filter,
        {r["room_id"]: r["encrypted"] for r in counts if r["room_id"] and r["encrypted"]},
    )


async def _fetch(
    conn: asyncpg.Connection, query: str, *args: object, what: str = "archive"
) -> list[asyncpg.Record]:
    try:
        result: list[asyncpg.Record] = await conn.fetch(queries.load(query), *args)
    except (*pgconnect.CONNECTION_ERRORS, asyncpg.PostgresError) as exc:
        error = errors.SourceError if what == "bridge" else errors.SinkUnavailable
        raise error(f"{what} query {query} failed: {pgconnect.describe(exc)}") from None
    return result


def _monitored(record: asyncpg.Record) -> models.MonitoredRoom:
    return models.MonitoredRoom(
        room_id=record["room_id"],
        enabled=record["enabled"],
        archive_media=record["archive_media"],
        whatsapp_id=record["whatsapp_id"],
        room_name=record["room_name"],
    )


def _ns(value: datetime | None) -> int | None:
    return int(value.timestamp() * 1_000_000_000) if value is not None else None
