"""The LISTEN edge: one dedicated connection that turns NOTIFY payloads into queued work.

NOTIFY is only a wake-up hint; the bridge's table is the truth. On every (re)connect we LISTEN
first and then ask for a catch-up sweep, so nothing committed while we were away is missed. The
notification callback is synchronous and O(1): parse, offer to the queue, never await. A full
queue or a payload that is not ours bumps a counter and asks for a catch-up instead.

A connection can die without telling us (a half-open TCP connection, a killed backend whose RST
never arrives): besides asyncpg's termination callback, an idle connection is probed with
``SELECT 1`` under a timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable

import asyncpg

from listener.core import backoff, errors, payload
from listener.db import connect as pgconnect
from listener.flow import pipeline
from listener.ops import metrics

logger = logging.getLogger(__name__)

APPLICATION_NAME = "archiver-db:listener"


class Listener:
    def __init__(
        self,
        *,
        dsn: str,
        channel: str,
        queue: asyncio.Queue[pipeline.WorkItem],
        request_sweep: Callable[[str], None],
        request_reconcile: Callable[[str], None] | None = None,
        metrics: metrics.Metrics,
        probe_interval_s: float,
        probe_timeout_s: float,
        max_backoff_s: float,
        rng: random.Random | None = None,
    ) -> None:
        self._dsn = dsn
        self._channel = channel
        self._queue = queue
        self._request_sweep = request_sweep
        self._request_reconcile = request_reconcile
        self._metrics = metrics
        self._probe_interval_s = probe_interval_s
        self._probe_timeout_s = probe_timeout_s
        self._max_backoff_s = max_backoff_s
        self._rng = rng or random.Random()
        self._last_activity = time.monotonic()
        self._sessions = 0
        self.connected = asyncio.Event()
        self.backend_pid: int | None = None

    async def run(self, stop: asyncio.Event) -> None:
        """Stay subscribed until ``stop`` is set, reconnecting with capped, jittered backoff."""
        attempt = 0
        while not stop.is_set():
            try:
                await self._session(stop)
                attempt = 0
            except errors.SourceError as exc:
                self._metrics.source_errors.labels("listener", type(exc).__name__).inc()
                delay = backoff.delay_s(
                    attempt, base_s=0.2, cap_s=self._max_backoff_s, rng=self._rng
                )
                logger.warning(
                    "listener connection lost, reconnecting in %.1f s: %s",
                    delay,
                    exc,
                    extra={"action": "listener_disconnected", "attempt": attempt},
                )
                attempt += 1
                await _wait(stop, delay)

    async def _session(self, stop: asyncio.Event) -> None:
        conn = await pgconnect.connect(self._dsn, application_name=APPLICATION_NAME)
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _conn: lost.set())
        try:
            await conn.add_listener(self._channel, self._on_notify)
            self.backend_pid = conn.get_server_pid()
            self._last_activity = time.monotonic()
            self.connected.set()
            self._metrics.listener_connected.set(1)
            if self._sessions:
                self._metrics.reconnects.labels("listener").inc()
            self._sessions += 1
            logger.info(
                "listening on channel %s", self._channel, extra={"action": "listener_connected"}
            )
            # Anything committed while we were not listening is found by the sweep.
            self._request_sweep("listener_connected")
            await self._watch(conn, lost, stop)
        except (*pgconnect.CONNECTION_ERRORS, asyncpg.PostgresError) as exc:
            raise errors.SourceError(f"listener: {pgconnect.describe(exc)}") from None
        finally:
            self.connected.clear()
            self._metrics.listener_connected.set(0)
            self.backend_pid = None
            conn.terminate()

    async def _watch(
        self, conn: asyncpg.Connection, lost: asyncio.Event, stop: asyncio.Event
    ) -> None:
        while not stop.is_set():
            await _first_of(lost, stop, timeout_s=self._probe_interval_s / 2)
            if lost.is_set() or conn.is_closed():
                raise errors.SourceError("listener connection closed")
            idle_s = time.monotonic() - self._last_activity
            if not stop.is_set() and idle_s >= self._probe_interval_s:
                await self._probe(conn)

    async def _probe(self, conn: asyncpg.Connection) -> None:
        try:
            await asyncio.wait_for(conn.fetchval("SELECT 1"), self._probe_timeout_s)
        except TimeoutError:
            raise errors.SourceError(
                f"listener connection did not answer a probe in {self._probe_timeout_s} s"
            ) from None
        self._last_activity = time.monotonic()

    def _on_notify(self, _conn: object, _pid: int, _channel: str, raw_payload: str) -> None:
        self._last_activity = time.monotonic()
        try:
            note = payload.parse_notification(raw_payload)
        except errors.PayloadError as exc:
            self._metrics.notifications.labels("malformed").inc()
            logger.warning(
                "ignoring a notification that is not ours: %s",
                exc,
                extra={"action": "notification_malformed"},
            )
            self._request_sweep("malformed_notification")
            return
        if note.table == "message" and note.op in ("INSERT", "UPDATE"):
            # An UPDATE is an edit applied in place: re-archive the row, outside the cursor.
            self._offer(pipeline.WorkItem(ranges=note.ranges, track=note.op == "INSERT"))
            return
        # Deletions and reactions leave nothing to read in the bridge: their truth is in
        # Synapse (redactions, m.reaction events), which the reconciliation pass reads.
        self._metrics.notifications.labels("reconcile").inc()
        if self._request_reconcile is not None:
            self._request_reconcile(f"{note.table}_{note.op.lower()}")

    def _offer(self, item: pipeline.WorkItem) -> None:
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            self._metrics.notifications.labels("queue_full").inc()
            # New rows are found again by the sweep, edits by the reconciliation pass.
            self._request_sweep("queue_full")
            if self._request_reconcile is not None and not item.track:
                self._request_reconcile("queue_full")
            return
        self._metrics.notifications.labels("queued").inc()
        self._metrics.queue_depth.set(self._queue.qsize())


async def _wait(stop: asyncio.Event, timeout_s: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout_s)


async def _first_of(*events: asyncio.Event, timeout_s: float) -> None:
    waiters = [asyncio.create_task(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
