"""The sink protocol: where archive records go. Implemented by PostgreSQL and Supabase sinks."""

from __future__ import annotations

from typing import Any, Protocol

from listener.core import models

CURSOR_KEY = "bridge_cursor"


class Sink(Protocol):
    name: str

    async def open(self) -> None:
        """Connect and check the archive schema is migrated (raise SchemaError if not)."""

    async def close(self) -> None: ...

    async def write(self, batch: models.ArchiveBatch) -> None:
        """Make ``batch`` durable, idempotently (upserts keyed by the natural keys).

        Raise SinkUnavailable when retrying later may succeed (the caller holds its place) and
        RowRejected when the data itself was refused.
        """

    async def load_state(self, key: str) -> Any | None: ...

    async def save_state(self, key: str, value: Any) -> None: ...

    async def monitored_rooms(self) -> list[models.MonitoredRoom]: ...

    async def open_failures(self, kinds: list[str]) -> list[models.Failure]: ...

    async def existing_event_ids(self, event_ids: list[str]) -> set[str]:
        """Which of these message event IDs the archive holds."""

    async def known_rooms(self) -> set[str]:
        """Rooms the archive holds messages of or is configured for."""

    async def undecrypted(self, after_event_id: str, limit: int) -> list[tuple[str, str, str]]:
        """``(event_id, room_id, megolm_session_id)`` of messages waiting for a Megolm session,
        by event ID after ``after_event_id``."""

    async def ping(self) -> None: ...
