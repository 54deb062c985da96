"""Operator-facing reads of the archive (failures, state, last message per room) and the heartbeat
write, with driver errors translated here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import asyncpg

from listener.core import errors, failure_kinds
from listener.db import connect, queries
from listener.sinks import postgres, protocol

DB_ERRORS = (*connect.CONNECTION_ERRORS, asyncpg.PostgresError)


class Queryable(Protocol):
    """An asyncpg connection or pool."""

    async def fetch(self, query: str, *args: object) -> list[asyncpg.Record]: ...

    async def fetchval(self, query: str, *args: object) -> Any: ...


async def fetch(db: Queryable, query: str, *args: object) -> list[asyncpg.Record]:
    try:
        return await db.fetch(queries.load(query), *args)
    except DB_ERRORS as exc:
        raise errors.SinkUnavailable(
            f"archive query {query} failed: {connect.describe(exc)}"
        ) from None


async def failures_pending(archive_sink: protocol.Sink) -> int:
    """Unresolved failures: a count on PostgreSQL, the retryable ones through any other sink."""
    if isinstance(archive_sink, postgres.PostgresSink):
        try:
            records = await fetch(archive_sink.pool, "ops_failures_pending")
        except errors.SinkError as exc:
            raise errors.SinkUnavailable(str(exc)) from None
        return int(records[0]["n"])
    return len(await archive_sink.open_failures(failure_kinds.RETRYABLE))


async def save_state(archive_sink: protocol.Sink, key: str, value: Any) -> None:
    """``sink.save_state`` with every failure turned into SinkUnavailable (never fatal)."""
    try:
        await archive_sink.save_state(key, value)
    except errors.SinkError as exc:
        raise errors.SinkUnavailable(str(exc)) from None
    except DB_ERRORS as exc:
        raise errors.SinkUnavailable(f"saving {key} failed: {connect.describe(exc)}") from None


@dataclass(frozen=True, slots=True)
class StateValue:
    value: Any
    updated_at: datetime
    age_s: float


async def states(db: Queryable, names: list[str]) -> dict[str, StateValue]:
    """Named ``archiver_state`` values with their age by the archive's own clock."""
    records = await fetch(db, "ops_state", names)
    return {
        r["name"]: StateValue(
            value=json.loads(r["value"]),
            updated_at=r["updated_at"],
            age_s=max(0.0, (r["db_now"] - r["updated_at"]).total_seconds()),
        )
        for r in records
    }


async def failures_by_kind(db: Queryable) -> list[asyncpg.Record]:
    return await fetch(db, "ops_failures_by_kind")


async def decryption_counts(db: Queryable) -> dict[str, tuple[int, int]]:
    """Messages of encrypted rooms by decryption status ('' = archived as ciphertext, without
    BRIDGE_PICKLE_KEY): (messages, rooms)."""
    rows = await fetch(db, "sink_decryption_counts")
    return {r["status"]: (int(r["messages"]), int(r["rooms"])) for r in rows}


async def last_per_room(db: Queryable) -> list[asyncpg.Record]:
    return await fetch(db, "ops_last_per_room")
