"""Notified ranges → rowids read from the bridge table → queued work. NOTIFY is only a hint.

The listener hands every message notification's ranges to :meth:`HintReader.offer` (synchronous,
O(payload)). Ranges wait there, coalesced and bounded (:mod:`listener.core.hints`), until this
task reads them:

- **INSERT** ranges are cut to what the rowid tracker has not seen — the holes above the cursor
  (rows not committed yet), the holes the cursor gave up on (a transaction open longer than
  ``SWEEP_GAP_TIMEOUT_S``) and everything above the newest row seen — and the rowids that exist
  there are read from the table a page at a time, claimed and queued like the sweep's. Rows
  already archived or scheduled are never read again, however often a range names them.
- **UPDATE** ranges (an edit applied in place: re-archive the row) may name any row, so they go
  to a bounded backlog read at ``rearchive_rows_per_s`` at most, one page at a time, after every
  pending INSERT. A hostile ``[[0, 2^63-1]]`` re-archives the table slowly and idempotently;
  live messages never wait behind it. Edits also reach the archive through the reconciliation
  pass, which reads Synapse's ``m.replace`` events, so a slow backlog delays nothing for long.

A range reaching past the newest rowid is counted (``archiver_notifications_total{result=
"clamped"}``) and logged, at most once a minute, with the PIDs of the backends that sent it.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from listener.core import backoff, errors, hints, tracker
from listener.flow import pipeline
from listener.ops import metrics, probes

logger = logging.getLogger(__name__)

# Re-archiving for UPDATE notifications: at most this many rows a second on average, this many
# at once. A real edit touches one row; a bridge migration that rewrites every row is re-read
# in the background at this pace.
REARCHIVE_ROWS_PER_S = 500.0
REARCHIVE_BURST_ROWS = 2000
WARNING_INTERVAL_S = 60.0


class RowidSource(Protocol):
    """The part of :class:`~listener.sources.bridge.BridgeSource` this module reads."""

    async def rowids_between(self, lo: int, hi: int, *, limit: int) -> list[int]: ...

    async def max_rowid(self) -> int: ...


class HintReader:
    """Turns pending notification ranges into work items of rowids that exist."""

    def __init__(
        self,
        *,
        bridge: RowidSource,
        tracker: tracker.RowidTracker,
        queue: asyncio.Queue[pipeline.WorkItem],
        metrics: metrics.Metrics,
        batch_size: int,
        rearchive_rows_per_s: float = REARCHIVE_ROWS_PER_S,
        rearchive_burst_rows: int = REARCHIVE_BURST_ROWS,
        max_backoff_s: float = 30.0,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self._bridge = bridge
        self._tracker = tracker
        self._queue = queue
        self._metrics = metrics
        self._batch_size = batch_size
        self._clock = clock
        self._max_backoff_s = max_backoff_s
        self._rng = rng or random.Random()
        self._inserts = hints.PendingRanges()
        self._updates = hints.PendingRanges()
        self._backlog = hints.RangeBacklog()
        self._bucket = hints.TokenBucket(rearchive_rows_per_s, rearchive_burst_rows)
        self._clamp_warning = hints.WarningGate(WARNING_INTERVAL_S)
        self._newest = 0  # the highest rowid known to exist (or to have existed)
        self._wakeup = asyncio.Event()

    # -- the listener's side (synchronous, O(len(ranges))) ---------------------------------------

    def offer(self, op: str, ranges: Sequence[hints.Range], sender: int | None) -> None:
        """Ranges of one message notification (``op`` INSERT or UPDATE), read soon."""
        (self._inserts if op == "INSERT" else self._updates).add(ranges, sender)
        self._wakeup.set()

    @property
    def backlog_ranges(self) -> int:
        """UPDATE intervals still to re-archive (bounded)."""
        return len(self._backlog)

    # -- the task --------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Read hints until ``stop``; a failed read is retried with backoff, never dropped."""
        attempt = 0
        while not stop.is_set():
            try:
                await self.read_once()
                attempt = 0
            except errors.SourceError as exc:
                self._metrics.source_errors.labels("notify_hints", type(exc).__name__).inc()
                delay = backoff.delay_s(
                    attempt, base_s=0.2, cap_s=self._max_backoff_s, rng=self._rng
                )
                attempt += 1
                logger.warning(
                    "reading notified ranges failed, retrying in %.1f s: %s",
                    delay,
                    exc,
                    extra={"action": "notify_hints_failed"},
                )
                await probes.first_set(stop, timeout_s=delay)
                continue
            await probes.first_set(stop, self._wakeup, timeout_s=self._idle_wait_s())
            self._wakeup.clear()

    def _idle_wait_s(self) -> float | None:
        if not self._backlog:
            return None  # until the next notification
        return max(0.01, self._bucket.wait_s(self._batch_size, self._clock()))

    async def read_once(self) -> None:
        """Every pending INSERT range, then at most one page of the UPDATE backlog."""
        await self._read_inserts(self._inserts.take())
        updates = self._updates.take()
        if updates:
            try:
                newest = await self._newest_rowid(updates[-1].hi)
            except BaseException:
                self._updates.add([(h.lo, h.hi) for h in updates])  # not lost: read later
                raise
            self._backlog.extend(self._clamped(updates, ceiling=newest))
        await self._read_backlog_page()

    async def _read_inserts(self, pending: list[hints.Hint]) -> None:
        for index, hint in enumerate(pending):
            try:
                await self._read_insert(hint)
            except BaseException:
                # Not read yet: back to pending (the sweep would find these rows too).
                self._inserts.add([(h.lo, h.hi) for h in pending[index:]])
                raise

    async def _read_insert(self, hint: hints.Hint) -> None:
        newest_seen = self._tracker.max_known
        parts = self._tracker.unseen_within(hint.lo, hint.hi)
        if not parts:
            self._metrics.notifications.labels("ignored").inc()
        for lo, hi in parts:
            last = await self._read_range(lo, hi)
            if hi == hint.hi > newest_seen and last != hi:
                # The range's top is not a row we have read: ask the table how far it goes.
                newest = await self._newest_rowid(hi)
                if hi > newest:
                    self._report_clamped(hint, newest)

    def _clamped(self, pending: list[hints.Hint], *, ceiling: int) -> list[hints.Hint]:
        kept = []
        for hint in pending:
            if hint.hi > ceiling:
                self._report_clamped(hint, ceiling)
            part = hints.clamp(hint, floor=0, ceiling=ceiling)
            if part is not None:
                kept.append(part)
        return kept

    async def _read_range(self, lo: int, hi: int) -> int | None:
        """Claim and queue the rowids that exist in ``[lo, hi]``, a page at a time (keyset);
        the last rowid read."""
        last = None
        while lo <= hi:
            rowids = await self._bridge.rowids_between(lo, hi, limit=self._batch_size)
            if not rowids:
                break
            last = rowids[-1]
            self._newest = max(self._newest, last)
            fresh = self._tracker.claim_new(rowids, now=self._clock())
            if fresh:
                item = pipeline.WorkItem(rowids=tuple(fresh), owned=True, source="notify")
                # A blocking put: the reader may wait for the workers; its rows stay claimed.
                await self._queue.put(item)
            if len(rowids) < self._batch_size:
                break
            lo = last + 1
        return last

    async def _read_backlog_page(self) -> None:
        if not self._backlog:
            return
        now = self._clock()
        budget = min(self._batch_size, self._bucket.available(now))
        if budget < 1:
            return
        hint = self._backlog.first()
        rowids = await self._bridge.rowids_between(hint.lo, hint.hi, limit=budget)
        # An empty page costs a token too: the rate bounds the queries as well as the rows.
        self._bucket.spend(max(1, len(rowids)), now)
        if rowids:
            item = pipeline.WorkItem(rowids=tuple(rowids), track=False, source="update")
            await self._queue.put(item)
        self._backlog.next_page(rowids[-1] if len(rowids) == budget else None)

    async def _newest_rowid(self, wanted: int) -> int:
        """The newest rowid, asked from the table only when a range reaches past what we know."""
        self._newest = max(self._newest, self._tracker.max_known, self._tracker.cursor)
        if wanted > self._newest:
            self._newest = max(self._newest, await self._bridge.max_rowid())
        return self._newest

    def _report_clamped(self, hint: hints.Hint, newest: int) -> None:
        self._metrics.notifications.labels("clamped").inc()
        held = self._clamp_warning.allow(self._clock())
        if held is None:
            return
        senders = ", ".join(str(pid) for pid in sorted(hint.senders)) or "unknown"
        logger.warning(
            "a notification's range [%d, %d] reaches past the newest bridge rowid %d: clamped "
            "(sending backend PID %s; %d more such warnings held back). A role that can "
            "connect to the bridge database may be sending NOTIFYs on our channel.",
            hint.lo,
            hint.hi,
            newest,
            senders,
            held,
            extra={"action": "notification_clamped", "sender_pids": sorted(hint.senders)},
        )
