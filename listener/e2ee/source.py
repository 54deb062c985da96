"""Synapse, as the pipeline and the reconciliation pass read it, with encrypted events
decrypted: every path that reads events (bridge rows, recovered messages, edits, reactions,
redaction targets, the stream the reconciliation pass classifies) sees the plaintext event, so
an encrypted portal is archived exactly as a clear one."""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Sequence

import asyncpg

from listener.core import megolm, models
from listener.e2ee import decryptor as decryptor_mod
from listener.sources import synapse

# Stream events the reconciliation pass classified from their plaintext: it reads a look-back
# window again every pass, and an event's plaintext never changes once decrypted.
_STREAM_CACHE_SIZE = 4096


class DecryptingSynapseSource(synapse.SynapseSource):
    def __init__(self, pool: asyncpg.Pool, decryptor: decryptor_mod.Decryptor) -> None:
        super().__init__(pool)
        self.decryptor = decryptor
        self._stream_shown: collections.OrderedDict[str, tuple[str, str]] = (
            collections.OrderedDict()
        )

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
        encrypted = [
            _as_event(e)
            for e in page
            if e.event_type == megolm.ENCRYPTED and e.event_id not in self._stream_shown
        ]
        for event in await self.decryptor.decrypt_events(encrypted):
            if event.decryption and event.decryption.status == megolm.Status.DECRYPTED:
                self._stream_shown[event.event_id] = (event.event_type, event.json_text)
                if len(self._stream_shown) > _STREAM_CACHE_SIZE:
                    self._stream_shown.popitem(last=False)
        return [self._shown(e) for e in page]

    def _shown(self, e: synapse.StreamEvent) -> synapse.StreamEvent:
        """The event as its plaintext when it decrypted, else as stored (ciphertext: a message
        candidate, archived as waiting for its session)."""
        shown = self._stream_shown.get(e.event_id)
        if shown is None:
            return e
        self._stream_shown.move_to_end(e.event_id)
        return dataclasses.replace(e, event_type=shown[0], json_text=shown[1])


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
