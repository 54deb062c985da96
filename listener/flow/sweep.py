"""The timed fallback sweep: finds every bridge row above the cursor that nobody has taken.

It runs at start, after every listener (re)connect, on request (a full queue, a payload that
was not ours) and every ``POLL_INTERVAL_MS`` even while the listener is healthy. It scans rowids
only (an index-only scan); the workers fetch the rows. Its cursor is the rowid, never the
message timestamp: history sync inserts old timestamps with new rowids.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from listener.core import tracker
from listener.flow import pipeline
from listener.ops import metrics
from listener.sources import bridge as bridge_source

logger = logging.getLogger(__name__)

# Requested sweeps (a reconnect, a payload that is not ours) run at most this often: a flood of
# junk notifications must not turn into back-to-back scans of the bridge table.
MIN_REQUESTED_SPACING_S = 0.2


class Sweeper:
    # The snapshot of the page just read, when that read can settle gaps (unfiltered).
    _snapshot: tracker.Snapshot | None

    def __init__(
        self,
        *,
        bridge: bridge_source.BridgeSource,
        tracker: tracker.RowidTracker,
        queue: asyncio.Queue[pipeline.WorkItem],
        metrics: metrics.Metrics,
        batch_size: int,
        limit_rows: int,
        max_in_flight_rows: int | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._bridge = bridge
        self._tracker = tracker
        self._queue = queue
        self._metrics = metrics
        self._batch_size = batch_size
        self._limit_rows = limit_rows
        # The sweep claims no more than this many rows ahead of the workers: a backfill of a
        # million rows must not hold a million rowids (in the tracker and the queue) at once.
        self._max_in_flight = max_in_flight_rows or 2 * limit_rows
        self._clock = clock
        self._wakeup = asyncio.Event()
        self._snapshot = None
        self._last_sweep_at = -MIN_REQUESTED_SPACING_S
        self.sweeps = 0
        # Set by a `backfill --since`: rows older than this are not wanted.
        self.since_ns: int | None = None

    def request(self, reason: str) -> None:
        """Ask for a sweep as soon as possible (safe from synchronous callbacks)."""
        logger.debug("sweep requested: %s", reason, extra={"action": "sweep_requested"})
        self._wakeup.set()

    async def sweep_once(self) -> int:
        """Queue every unclaimed row above the cursor; return how many were queued."""
        queued = 0
        after = self._tracker.cursor
        while True:
            await self._room_for_more()
            rowids = await self._read_page(after)
            # The cursor may have passed rows of this page while the read ran (the workers
            # finished them): the tracker returns every row at or below the cursor, so they
            # would be archived and counted twice. A row that commits below the cursor late
            # (in a hole stepped over) comes through its notification, not the sweep.
            cursor = self._tracker.cursor
            fresh = self._tracker.claim_new([r for r in rowids if r > cursor], now=self._clock())
            if self._snapshot is not None:
                # Every row committed under this snapshot in the range read is in ``rowids``.
                through = rowids[-1] if len(rowids) >= self._limit_rows else tracker.MAX_ROWID
                self._tracker.settle(after=after, through=through, snapshot=self._snapshot)
            for start in range(0, len(fresh), self._batch_size):
                chunk = tuple(fresh[start : start + self._batch_size])
                # A blocking put: the sweep may wait for the workers, it must not drop work.
                await self._queue.put(pipeline.WorkItem(rowids=chunk, owned=True, source="sweep"))
            queued += len(fresh)
            if len(rowids) < self._limit_rows:
                break
            after = rowids[-1]
        self.sweeps += 1
        self._last_sweep_at = time.monotonic()
        if queued:
            self._metrics.sweep_recovered.inc(queued)
            logger.info(
                "sweep queued %d rows no notification had delivered",
                queued,
                extra={"action": "sweep_recovered"},
            )
        return queued

    async def _room_for_more(self) -> None:
        """Wait while the rows already claimed reach the bound (the workers free them)."""
        while self._tracker.in_flight >= self._max_in_flight:  # noqa: ASYNC110 - no event for it
            await asyncio.sleep(0.01)

    async def _read_page(self, after: int) -> list[int]:
        self._snapshot = None
        if self.since_ns is not None:  # a filtered read proves nothing about gaps
            return await self._bridge.rowids_after(
                after, limit=self._limit_rows, since_ns=self.since_ns
            )
        rowids, self._snapshot = await self._bridge.rowids_after_with_snapshot(
            after, limit=self._limit_rows
        )
        return rowids

    async def wait_for_next(self, interval_s: float) -> None:
        """Sleep until the interval passes or a sweep is requested."""
        try:
            await asyncio.wait_for(self._wakeup.wait(), interval_s)
        except TimeoutError:
            return  # the interval the caller chose (a short one while a gap settles, too)
        early_s = MIN_REQUESTED_SPACING_S - (time.monotonic() - self._last_sweep_at)
        if early_s > 0:
            await asyncio.sleep(early_s)
        self._wakeup.clear()
