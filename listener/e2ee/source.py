"""Synapse, as the pipeline and the reconciliation pass read it, with encrypted events
decrypted: every path that reads events (bridge rows, recovered messages, edits, reactions,
redaction targets, the stream the reconciliation pass classifies) sees the plaintext event, so
an encrypted portal is archived exactly as a clear one."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import asyncpg

from listener.core import megolm, models
from listener.e2ee import decryptor as decryptor_mod
from listener.sources import synapse


class DecryptingSynapseSource(synapse.SynapseSource):
    def __init__(self, pool: asyncpg.Pool, decryptor: decryptor_mod.Decryptor) -> None:
        super().__init__(pool)
        self.decryptor = decryptor

    async def events(self, event_ids: Sequence[str]) -> dict[str, models.SynapseEvent]:
        events = await super().events(event_ids)
        decrypted = await self.decryptor.decrypt_events(events.values())
        return {e.event_id: e for e in decrypted}

    async def stream(
        self, after: int, *, room_ids: Sequence[str], types: Sequence[str], limit: int
    ) -> list[synapse.StreamEvent]:
        """The stream with encrypted events shown as their plaintext type and content: only
        the plaintext tells a reaction (MSC4392 seals its relation) from a message."""
        page = await super().stream(after, room_ids=room_ids, types=types, limit=limit)
        encrypted = [_as_event(e) for e in page if e.event_type == megolm.ENCRYPTED]
        if not encrypted:
            return page
        shown = {e.event_id: e for e in await self.decryptor.decrypt_events(encrypted)}
        return [_shown(e, shown.get(e.event_id)) for e in page]


def _as_event(e: synapse.StreamEvent) -> models.SynapseEvent:
    return models.SynapseEvent(
        event_id=e.event_id,
        room_id=e.room_id,
        event_type=e.event_type,
        sender="",
        origin_server_ts_ms=0,
        stream_ordering=e.stream_ordering,
        json_text=e.json_text,
        outlier=False,
        rejection_reason=None,
    )


def _shown(e: synapse.StreamEvent, event: models.SynapseEvent | None) -> synapse.StreamEvent:
    if event is None:
        return e
    return dataclasses.replace(e, event_type=event.event_type, json_text=event.json_text)
