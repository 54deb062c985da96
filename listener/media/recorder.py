"""Group commits for finished media copies: many rows per sink round trip.

Copy workers hand a finished row over and move on to the next copy; one short-lived task
writes whatever has accumulated (rows, then their analysis jobs) in a single batch. Each
caller's future resolves with the status once its row is durable in the archive, or with
``pending`` when the write failed (the row stays pending for the retry scan).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from listener.core import errors
from listener.sinks import media_protocol

logger = logging.getLogger(__name__)

WriteBatch = Callable[[list[media_protocol.MediaRow]], Awaitable[None]]


class Recorder:
    def __init__(self, write: WriteBatch, *, max_batch: int = 500) -> None:
        self._write = write
        self._max_batch = max_batch
        self._queue: list[tuple[media_protocol.MediaRow, asyncio.Future[str]]] = []
        self._task: asyncio.Task[None] | None = None

    def submit(self, row: media_protocol.MediaRow) -> asyncio.Future[str]:
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._queue.append((row, future))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._drain(), name="media-recorder")
        return future

    async def close(self, *, timeout_s: float = 10.0) -> None:
        """Let the batch being written finish while the sink is still open (a row whose bytes
        are stored is recorded now rather than left to the retry scan), then stop. Called by
        the archiver's shutdown, before the composition root closes the sink: a write still
        running after that would fail on a closed client."""
        task = self._task
        if task is None or task.done():
            return
        await asyncio.wait({task}, timeout=timeout_s)
        if not task.done():
            task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    async def _drain(self) -> None:
        while self._queue:
            batch = self._queue[: self._max_batch]
            del self._queue[: self._max_batch]
            try:
                await self._write([row for row, _ in batch])
            except (errors.ArchiverError, OSError) as exc:
                logger.warning("media row write failed: %s", exc, extra={"action": "media_write"})
                statuses = ["pending"] * len(batch)
            else:
                statuses = [row.status for row, _ in batch]
            for (_, future), status in zip(batch, statuses, strict=True):
                if not future.done():
                    future.set_result(status)
