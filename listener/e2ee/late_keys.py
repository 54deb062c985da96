"""Late keys: messages archived as ``no_session`` are decrypted again once their session is in
the bridge's store (keys arrive late: to-device lag, a device sharing late, key backup).

Polled, not triggered: each pass reads one keyset page of waiting messages from the archive,
asks the bridge which of their sessions it now holds (one indexed query on its primary key,
no pickles read) and hands those messages back to the normal pipeline, which decrypts and
upserts them (idempotent by event ID: nothing doubles). Withheld sessions are re-archived once
as ``withheld`` and leave the waiting set. Runs with every reconciliation pass and as
``archiver-db retry-decryption``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from listener.e2ee import sessions

logger = logging.getLogger(__name__)

Rearchive = Callable[[list[str]], Awaitable[int]]


class Waiting(Protocol):
    async def undecrypted(self, after_event_id: str, limit: int) -> list[tuple[str, str, str]]: ...


class Present(Protocol):
    async def present(
        self, keys: set[sessions.SessionKey] | frozenset[sessions.SessionKey]
    ) -> set[sessions.SessionKey]: ...


@dataclass(slots=True)
class Stats:
    waiting: int = 0  # messages looked at
    retried: int = 0  # handed back to the pipeline (their session arrived)
    wrapped: bool = False  # reached the end of the waiting set


class LateKeys:
    def __init__(
        self,
        *,
        archive: Waiting,
        store: Present,
        rearchive: Rearchive,
        page_size: int,
        batch_size: int,
    ) -> None:
        self._archive = archive
        self._store = store
        self._rearchive = rearchive
        self._page_size = page_size
        self._batch_size = batch_size
        self._after = ""

    async def run_once(self) -> Stats:
        """One page of waiting messages; the next pass continues after it (then wraps)."""
        page = await self._archive.undecrypted(self._after, self._page_size)
        stats = Stats(waiting=len(page), wrapped=len(page) < self._page_size)
        self._after = "" if stats.wrapped else page[-1][0]
        keys = {(room_id, session_id) for _event, room_id, session_id in page}
        present = await self._store.present(keys) if keys else set()
        ready = sorted(event_id for event_id, room, sid in page if (room, sid) in present)
        for start in range(0, len(ready), self._batch_size):
            await self._rearchive(ready[start : start + self._batch_size])
        stats.retried = len(ready)
        if ready:
            logger.info(
                "%d messages decrypted again: their Megolm sessions arrived",
                len(ready),
                extra={"action": "late_keys_retried"},
            )
        return stats

    async def run_all(self) -> Stats:
        """Every waiting message once (``archiver-db retry-decryption``)."""
        self._after = ""
        total = Stats()
        while True:
            stats = await self.run_once()
            total.waiting += stats.waiting
            total.retried += stats.retried
            if stats.wrapped:
                total.wrapped = True
                return total
