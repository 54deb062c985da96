"""The bridge's Megolm inbound sessions (mautrix-go's ``crypto_megolm_inbound_session``).

The bridge keys them by ``(account_id, session_id)`` and matches the room on read
(``crypto/sql_store.go`` GetGroupSession); bridgev2 passes the bridge ID as account ID
(``bridgev2/matrix/crypto.go``: ``string(bridge.ID)``, ``''`` for mautrix-whatsapp).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Protocol

import asyncpg

from listener.core import errors
from listener.db import connect, queries

SessionKey = tuple[str, str]  # (room_id, session_id)


@dataclass(frozen=True, slots=True)
class StoredSession:
    pickle: str | None  # libolm pickle text (base64); None when withheld or redacted
    withheld_code: str | None


class Sessions(Protocol):
    """What the decryptor needs of a session store (the bridge's, or a test's)."""

    async def fetch(self, keys: Collection[SessionKey]) -> dict[SessionKey, StoredSession]: ...


class SessionStore:
    """Reads sessions; never writes (the bridge owns them and re-stores them after use)."""

    def __init__(self, pool: asyncpg.Pool, *, account_id: str) -> None:
        self._pool = pool
        self._account_id = account_id

    async def fetch(self, keys: Collection[SessionKey]) -> dict[SessionKey, StoredSession]:
        """The stored sessions among ``keys`` (absent ones are simply missing)."""
        records = await self._query("bridge_megolm_sessions", keys)
        found = {}
        for r in records:
            key = (r["room_id"], r["session_id"])
            if key in keys:
                pickle = bytes(r["session"]).decode("ascii", "replace") if r["session"] else None
                found[key] = StoredSession(pickle, r["withheld_code"])
        return found

    async def present(self, keys: set[SessionKey] | frozenset[SessionKey]) -> set[SessionKey]:
        """The ``keys`` the bridge now holds a session or a withheld notice for."""
        records = await self._query("bridge_megolm_sessions_present", keys)
        return {(r["room_id"], r["session_id"]) for r in records} & set(keys)

    async def _query(self, name: str, keys: Collection[SessionKey]) -> list[asyncpg.Record]:
        if not keys:
            return []
        session_ids = sorted({session_id for _room, session_id in keys})
        return await connect.fetch(
            self._pool,
            queries.load(name),
            self._account_id,
            session_ids,
            label=f"bridge query {name}",
            error=errors.SourceError,
        )
