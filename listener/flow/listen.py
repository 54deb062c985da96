"""The LISTEN edge: one dedicated connection that turns NOTIFY payloads into queued work.

NOTIFY is only a wake-up hint; the bridge's table is the truth. On every (re)connect we LISTEN
first and then ask for a catch-up sweep, so nothing committed while we were away is missed. The
notification callback is synchronous and bounded by the payload's size: parse, hand the ranges
to the hint reader (:mod:`listener.flow.hint_reader`, which reads the rows that exist inside them),
never await. Any role that can connect to the bridge database can NOTIFY our channel: a payload
that is not ours bumps a counter, asks for a catch-up and is logged at most once a minute with
the sending backend's PID.

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

from listener.core import backoff, errors, hints, payload
from listener.db import connect as pgconnect
from listener.flow import hint_reader
from listener.ops import metrics, probes

logger = logging.getLogger(__name__)

APPLICATION_NAME = "archiver-db:listener"


class Listener:
    def __init__(
        self,
        *,
        dsn: str,
        channel: str,
        reader: hint_reader.HintReader,
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
        self._reader = reader
        self._malformed_warning = hints.WarningGate(hint_reader.WARNING_INTERVAL_S)
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
            # Checked four times per interval: a silent death is noticed within
            # interval + interval / 4 + the probe's timeout.
            await probes.first_set(lost, stop, timeout_s=self._probe_interval_s / 4)
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

    def _on_notify(self, _conn: object, pid: int, _channel: str, raw_payload: str) -> None:
        self._last_activity = time.monotonic()
        try:
            note = payload.parse_notification(raw_payload)
        except errors.PayloadError as exc:
            self._metrics.notifications.labels("malformed").inc()
            self._warn_malformed(pid, exc)
            self._request_sweep("malformed_notification")
            return
        if note.table == "message" and note.op in ("INSERT", "UPDATE"):
            # An UPDATE is an edit applied in place: re-archive the row, outside the cursor.
            self._reader.offer(note.op, note.ranges, pid)
            self._metrics.notifications.labels("queued").inc()
            return
        # Deletions and reactions leave nothing to read in the bridge: their truth is in
        # Synapse (redactions, m.reaction events), which the reconciliation pass reads.
        self._metrics.notifications.labels("reconcile").inc()
        if self._request_reconcile is not None:
            self._request_reconcile(f"{note.table}_{note.op.lower()}")

    def _warn_malformed(self, pid: int, exc: errors.PayloadError) -> None:
        held = self._malformed_warning.allow(time.monotonic())
        if held is None:
            return
        logger.warning(
            "ignoring a notification on channel %s that is not ours, sent by backend PID %d "
            "(%d more held back since the last warning): %s",
            self._channel,
            pid,
            held,
            exc,
            extra={"action": "notification_malformed", "sender_pid": pid},
        )


async def _wait(stop: asyncio.Event, timeout_s: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout_s)
