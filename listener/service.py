"""The composition root: builds everything from the settings and owns every long-lived task."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import asyncpg

import listener
from listener import settings
from listener.core import backoff, errors, models, roomfilter, tracker
from listener.core.networks import origin as networks_origin
from listener.db import connect
from listener.e2ee import decryptor, late_keys, sessions
from listener.e2ee import source as e2ee_source
from listener.flow import hint_reader, listen, pipeline, reconcile, sweep, workers
from listener.media import archiver as media
from listener.media import blobstore, http_fallback
from listener.media import catchup as media_catchup
from listener.media import source as media_source
from listener.ops import archive_stats, metrics, metrics_server, probes, sdnotify
from listener.sinks import media_protocol, postgres, postgres_media
from listener.sinks import protocol as sink
from listener.sources import bridge as bridge_source
from listener.sources import synapse as synapse_source

if TYPE_CHECKING:
    from listener.sinks.supabase import sink as supabase_sink

logger = logging.getLogger(__name__)

ROOM_REFRESH_INTERVAL_S = 30.0
STARTUP_MAX_BACKOFF_S = 2.0
STARTUP_LOG_INTERVAL_S = 30.0
GAP_KEY = "bridge_gap"
# The first follow-up sweep after the cursor stops at a gap; doubled while it stays open.
GAP_FIRST_RETRY_S = 0.05
# How much longer than the next attempt systemd's start timeout is extended while waiting.
STARTUP_EXTEND_S = 30.0
TRIGGER_WARNING_INTERVAL_S = 300.0


def build_sink(config: settings.Settings) -> sink.Sink:
    """Supabase when SUPABASE_URL is set, else the PostgreSQL sink."""
    if config.supabase_url is not None:
        # Imported here: PostgreSQL-only installs need not have the supabase package.
        from listener.sinks.supabase import api as supabase_api
        from listener.sinks.supabase import sink as supabase_sink

        assert config.supabase_key is not None  # guaranteed by Settings validation
        api = supabase_api.SupabaseApi(
            config.supabase_url,
            config.supabase_key.get_secret_value(),
            timeout_s=config.supabase_timeout_s,
            retry_budget_s=config.supabase_retry_budget_s,
            max_retry_after_s=config.supabase_max_retry_after_s,
            max_request_bytes=config.supabase_max_request_bytes,
            max_connections=2 * config.workers + 4,
        )
        return supabase_sink.SupabaseSink(api)
    assert config.archive_db_url is not None  # guaranteed by Settings validation
    return postgres.PostgresSink(
        config.archive_db_url.get_secret_value(), pool_size=config.workers + 1
    )


def build_media_backends(
    config: settings.Settings, archive_sink: sink.Sink
) -> tuple[media_protocol.MediaSink, blobstore.BlobStore] | None:
    """Where media rows and bytes go for this sink; None when media archiving is off."""
    if not config.download_media and config.media_store_path is None:
        return None
    if isinstance(archive_sink, postgres.PostgresSink):
        if config.media_archive_path is None:
            logger.warning(
                "media is not archived: set MEDIA_ARCHIVE_PATH (where the PostgreSQL sink keeps "
                "media bytes) and MEDIA_STORE_PATH (Synapse's media store)",
                extra={"action": "media_disabled"},
            )
            return None
        return (
            postgres_media.PgMediaSink(archive_sink.pool),
            blobstore.LocalBlobStore(config.media_archive_path),
        )
    from listener.sinks.supabase import sink as supabase_sink

    if isinstance(archive_sink, supabase_sink.SupabaseSink):
        return archive_sink.media_sink(), _supabase_blob_store(config, archive_sink)
    logger.warning("media is not archived by sink %s", archive_sink.name)
    return None


def _supabase_blob_store(
    config: settings.Settings, archive_sink: supabase_sink.SupabaseSink
) -> blobstore.BlobStore:
    """Bytes in the private bucket MEDIA_BUCKET (created on first use), staged under
    SUPABASE_STAGING_PATH, through the sink's own API client."""
    from listener.media import supabase_blobstore

    staging = config.supabase_staging_path or Path(tempfile.gettempdir()) / "archiver-db-staging"
    return supabase_blobstore.SupabaseBlobStore(
        archive_sink.api,
        bucket=config.media_bucket,
        staging_dir=staging,
        tus_threshold_bytes=config.supabase_tus_threshold_bytes,
    )


@dataclass
class Health:
    """What the service knows about itself, for readiness, status and logs."""

    trigger_present: bool | None = None
    trigger_warned_at: float = 0.0
    bridge_ok: bool = False
    synapse_ok: bool = False
    sink_ok: bool = False
    started_at: float = field(default_factory=time.time)


class Service:
    def __init__(
        self,
        config: settings.Settings,
        *,
        archive_sink: sink.Sink | None = None,
        service_metrics: metrics.Metrics | None = None,
        on_archived: pipeline.OnArchived | None = None,
    ) -> None:
        self.config = config
        self.sink = archive_sink or build_sink(config)
        self._sink_injected = archive_sink is not None
        self._opening: str | None = None  # the database open() is connecting to
        self.waiting_for: str | None = None  # set while a start waits for a database
        self._http_started = False
        self._saved_gap: tuple[int, float] | None = None
        self._gap_retry_s = GAP_FIRST_RETRY_S
        self.metrics = service_metrics or metrics.Metrics()
        self.health = Health()
        self._on_archived = on_archived
        self._bridge_pool: asyncpg.Pool | None = None
        self._synapse_pool: asyncpg.Pool | None = None
        self.decryptor: decryptor.Decryptor | None = None
        self.late_keys: late_keys.LateKeys | None = None
        self._undecryptable_cycle = 0
        self.queue: asyncio.Queue[pipeline.WorkItem] = asyncio.Queue(config.queue_size)
        self.metrics.queue_capacity.set(config.queue_size)
        self.stop_event = asyncio.Event()
        self.ready = asyncio.Event()
        # operations: /metrics + probes, systemd notifications
        self.metrics.queue_depth.set_function(self.queue.qsize)
        self.notifier = sdnotify.Notifier(
            config.notify_socket,
            watchdog_usec=config.watchdog_usec,
            watchdog_pid=config.watchdog_pid,
        )
        self.http = metrics_server.MetricsServer(
            config.metrics_addr,
            registry=self.metrics.registry,
            live=self.liveness,
            ready=self.readiness,
        )
        self._workers_alive: list[asyncio.Task[None]] = []
        self._dependencies: dict[str, bool] = {}

    # -- lifecycle ---------------------------------------------------------------------------

    async def open_when_reachable(self) -> bool:
        """:meth:`open`, retried while a database does not answer; False if stopped first.

        A database that is down at start-up is an outage like any other: the process stays up,
        ``/readyz`` and systemd's ``STATUS=`` name the database it waits for (the start timeout
        is extended meanwhile), and archiving starts the moment it answers. The retry delay is
        the run-time backoff capped at ``STARTUP_MAX_BACKOFF_S``: a refused connection costs
        nothing, and a late start costs latency. A configuration error still stops the start.
        """
        await self._start_http()
        attempt, logged_at = 0, -STARTUP_LOG_INTERVAL_S
        while not self.stop_event.is_set():
            try:
                await self.open()
                self.waiting_for = None
                return True
            except (errors.SourceError, errors.SinkUnavailable) as exc:
                self.waiting_for = self._opening or "database"
                delay = backoff.delay_s(
                    attempt,
                    base_s=0.2,
                    cap_s=min(self.config.reconnect_max_backoff_s, STARTUP_MAX_BACKOFF_S),
                    rng=random.Random(),
                )
                attempt += 1
                self.notifier.notify(
                    f"STATUS=waiting for the {self.waiting_for} database",
                    f"EXTEND_TIMEOUT_USEC={int((delay + STARTUP_EXTEND_S) * 1_000_000)}",
                )
                if time.monotonic() - logged_at >= STARTUP_LOG_INTERVAL_S:  # not every 2 s
                    logged_at = time.monotonic()
                    logger.warning(
                        "waiting for the %s database (attempt %d, retrying every %.0f s or "
                        "sooner): %s",
                        self.waiting_for,
                        attempt,
                        STARTUP_MAX_BACKOFF_S,
                        exc,
                        extra={"action": "startup_waiting", "dependency": self.waiting_for},
                    )
                self.sink = self._fresh_sink()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stop_event.wait(), delay)
        return False

    async def _start_http(self) -> None:
        if not self._http_started:
            self._http_started = True
            await self.http.start()

    def _fresh_sink(self) -> sink.Sink:
        """A sink that was opened and closed is not reopened: a new one per start attempt."""
        return self.sink if self._sink_injected else build_sink(self.config)

    async def open(self) -> None:
        """Connect to both sources and the sink, load the cursor and the room configuration."""
        try:
            await self._open()
        except BaseException:
            await self.close()  # nothing half-open is left behind a failed start
            raise
        self._opening = None

    async def _open(self) -> None:
        config = self.config
        self._opening = "bridge"
        self._bridge_pool = await connect.create_pool(
            config.whatsapp_db_url.get_secret_value(),
            application_name="archiver-db:bridge",
            max_size=config.workers + 2,
        )
        self._opening = "synapse"
        self._synapse_pool = await connect.create_pool(
            config.synapse_db_url.get_secret_value(),
            application_name="archiver-db:synapse",
            max_size=config.workers + 1,
        )
        self._opening = "archive"
        await self.sink.open()
        # Before the first bridge query: a legacy (pre-bridgev2) schema fails every query, and
        # no retry fixes it, so it is refused here in one line.
        self._opening = "bridge"
        verdict = await bridge_source.check_schema(self._bridge_pool)
        logger.info("bridge database: %s", verdict.describe(), extra={"action": "bridge_schema"})
        self.bridge = bridge_source.BridgeSource(self._bridge_pool, bridge_id=config.bridge_id)
        self.synapse = self._build_synapse(self._bridge_pool, self._synapse_pool)
        cursor = await self._load_cursor()
        self._saved_gap = await self._load_gap()
        self.tracker = tracker.RowidTracker(
            cursor,
            gap_timeout_s=config.sweep_gap_timeout_s,
            gap_since=self._saved_gap,
            settle_by_snapshot=await self._rowids_in_order(),
        )
        self.rooms = pipeline.RoomDirectory(await self._load_room_filter())
        self.processor = pipeline.Processor(
            bridge=self.bridge,
            synapse=self.synapse,
            sink=self.sink,
            tracker=self.tracker,
            rooms=self.rooms,
            metrics=self.metrics,
            missing_event_timeout_s=config.missing_event_timeout_s,
            max_backoff_s=config.reconnect_max_backoff_s,
            on_archived=self._archived,
            # One bridge, named `whatsapp` as before bridges had names; its network as the
            # bridge database says (WhatsApp when it cannot tell).
            origin=networks_origin.for_bridge("whatsapp", verdict.network),
        )
        self.media = self._build_media()
        if self.media is not None:
            self.media.on_outcome = self._count_media
        self.workers = workers.Workers(
            processor=self.processor,
            queue=self.queue,
            batch_size=config.batch_size,
            retry_delay_s=config.missing_event_retry_s,
            metrics=self.metrics,
        )
        self.sweeper = sweep.Sweeper(
            bridge=self.bridge,
            tracker=self.tracker,
            queue=self.queue,
            metrics=self.metrics,
            batch_size=config.batch_size,
            limit_rows=config.sweep_limit_rows,
            max_in_flight_rows=max(
                2 * config.sweep_limit_rows, 8 * config.workers * config.batch_size
            ),
        )
        self.reconciler = reconcile.Reconciler(
            bridge=self.bridge,
            synapse=self.synapse,
            sink=self.sink,
            processor=self.processor,
            metrics=self.metrics,
            batch_size=config.batch_size,
            grace_s=config.reconcile_grace_s,
        )
        self.late_keys = self._build_late_keys(self._bridge_pool)
        self.hint_reader = hint_reader.HintReader(
            bridge=self.bridge,
            tracker=self.tracker,
            queue=self.queue,
            metrics=self.metrics,
            batch_size=config.batch_size,
            max_backoff_s=config.reconnect_max_backoff_s,
        )
        self.metrics.notify_backlog.set_function(lambda: self.hint_reader.backlog_ranges)
        self.listener = listen.Listener(
            dsn=config.whatsapp_db_url.get_secret_value(),
            channel=config.notify_channel,
            reader=self.hint_reader,
            request_sweep=self.sweeper.request,
            request_reconcile=self.reconciler.request,
            metrics=self.metrics,
            probe_interval_s=config.listener_probe_interval_s,
            probe_timeout_s=config.listener_probe_timeout_s,
            max_backoff_s=config.reconnect_max_backoff_s,
        )
        self.metrics.cursor.set(cursor)
        logger.info("archive cursor at rowid %d", cursor, extra={"action": "service_opened"})

    def _build_synapse(
        self, bridge_pool: asyncpg.Pool, synapse_pool: asyncpg.Pool
    ) -> synapse_source.SynapseSource:
        """Synapse as every path reads it: decrypted with the bridge's Megolm sessions when
        BRIDGE_PICKLE_KEY is set, else as stored (encrypted events archived as ciphertext)."""
        key = self.config.bridge_pickle_key
        if key is None:
            return synapse_source.SynapseSource(synapse_pool)
        counter = self.metrics.decryption_total
        self.decryptor = decryptor.Decryptor(
            sessions.SessionStore(bridge_pool, account_id=self.config.bridge_id),
            # mautrix-go uses the config string's bytes as the key (bridgev2/matrix/cryptostore.go)
            pickle_key=key.get_secret_value().encode("utf-8"),
            cache_size=self.config.e2ee_session_cache_size,
            observe=lambda result: counter.labels(result).inc(),
        )
        return e2ee_source.DecryptingSynapseSource(synapse_pool, self.decryptor)

    def _build_late_keys(self, bridge_pool: asyncpg.Pool) -> late_keys.LateKeys | None:
        if self.config.bridge_pickle_key is None:
            return None
        return late_keys.LateKeys(
            archive=self.sink,
            store=sessions.SessionStore(bridge_pool, account_id=self.config.bridge_id),
            rearchive=self.processor.archive_events,
            page_size=self.config.e2ee_retry_messages,
            batch_size=self.config.batch_size,
        )

    async def retry_decryption(self) -> late_keys.Stats:
        """Every message waiting for a Megolm session, once (``archiver-db retry-decryption``)."""
        if self.late_keys is None:
            raise errors.ConfigError("set BRIDGE_PICKLE_KEY to decrypt encrypted rooms")
        return await self.late_keys.run_all()

    async def _late_keys_step(self) -> None:
        if self.late_keys is None:
            return
        stats = await self.late_keys.run_once()
        self._undecryptable_cycle += stats.waiting - stats.retried
        if stats.wrapped:
            self.metrics.undecryptable_messages.set(self._undecryptable_cycle)
            self._undecryptable_cycle = 0

    async def _load_cursor(self) -> int:
        """The saved rowid cursor, never beyond the bridge's newest row: a bridge database
        restored from a backup (or recreated) would otherwise have every new row below it."""
        self._opening = "archive"
        state = await self.sink.load_state(sink.CURSOR_KEY)
        saved = int(state["rowid"]) if state else 0
        self._opening = "bridge"
        newest = await self.bridge.max_rowid()
        if saved <= newest:
            return saved
        logger.warning(
            "the archive's cursor %d is beyond the bridge's newest rowid %d (a restored or "
            "recreated bridge database, or its newest rows deleted): reading from %d",
            saved,
            newest,
            newest,
            extra={"action": "cursor_clamped"},
        )
        return newest

    async def _load_gap(self) -> tuple[int, float] | None:
        """The gap the cursor waited behind when the last process stopped, and since when."""
        self._opening = "archive"
        state = await self.sink.load_state(GAP_KEY)
        try:
            return (int(state["rowid"]), float(state["since"])) if state else None
        except (KeyError, TypeError, ValueError):
            return None  # no gap (saved as null), or not a value we wrote

    async def _rowids_in_order(self) -> bool:
        """Whether rowids are handed out in order (sequence cache 1): gaps then settle by
        snapshot; otherwise only the timeout gives them up."""
        self._opening = "bridge"
        try:
            cache = await self.bridge.rowid_sequence_cache()
        except errors.SourceError as exc:
            cache, reason = None, str(exc)
        else:
            reason = f"its cache is {cache}" if cache is not None else "it was not found"
        if cache == 1:
            return True
        logger.warning(
            "cannot tell from message.rowid's sequence that rowids are handed out in order "
            "(%s): rowid gaps are given up on only after SWEEP_GAP_TIMEOUT_S (%.0f s)",
            reason,
            self.config.sweep_gap_timeout_s,
            extra={"action": "gap_settling_by_timeout"},
        )
        return False

    async def _save_gap(self) -> None:
        """Persist the gap the cursor waits behind (its timeout survives restarts)."""
        gap = self.tracker.blocking_gap()
        if gap == self._saved_gap:
            return
        value = {"rowid": gap[0], "since": gap[1]} if gap else {"rowid": None, "since": None}
        await archive_stats.save_state(self.sink, GAP_KEY, value)
        self._saved_gap = gap

    def _next_sweep_in_s(self) -> float:
        """The poll interval; much sooner while the cursor waits behind a gap, which the next
        sweep's snapshot usually settles (backing off while a transaction keeps it open)."""
        if self.tracker.blocking_gap() is None:
            self._gap_retry_s = GAP_FIRST_RETRY_S
            return self.config.poll_interval_s
        delay, self._gap_retry_s = self._gap_retry_s, self._gap_retry_s * 2
        return min(delay, self.config.poll_interval_s)

    def _archived(self, messages: list[models.ArchivedMessage], committed_at: float) -> None:
        """The pipeline's hook once messages are durable: their media, then any caller's hook."""
        if self.media is not None:
            self.media.offer_archived(messages, committed_at)
        if self._on_archived is not None:
            self._on_archived(messages, committed_at)

    def _count_media(self, status: str, size_bytes: int) -> None:
        self.metrics.media_items.labels(status).inc()
        self.metrics.media_bytes.labels(status).inc(size_bytes)

    def _build_media(self) -> media.MediaArchiver | None:
        config = self.config
        backends = build_media_backends(config, self.sink)
        if backends is None:
            return None
        media_rows, blobs = backends
        assert self._synapse_pool is not None
        fetcher = None
        if config.media_http_fallback_url and config.media_access_token:
            fetcher = http_fallback.HttpMediaFetcher(
                config.media_http_fallback_url,
                access_token=config.media_access_token.get_secret_value(),
            )
        return media.MediaArchiver(
            source=media_source.MediaSource(self._synapse_pool),
            sink=media_rows,
            store=blobs,
            media_store_path=config.media_store_path,
            server_name=config.synapse_server_name,
            download_media=config.download_media,
            media_allowed=lambda room_id, chat_id: self.rooms.current.archive_media(
                room_id, chat_id or ""
            ),
            workers=config.media_workers,
            small_file_workers=config.media_small_file_workers,
            queue_size=config.media_queue_size,
            upload_wait_s=config.media_upload_wait_s,
            upload_poll_s=config.media_upload_poll_s,
            missing_retry_s=config.media_missing_retry_s,
            archive_quarantined=config.archive_quarantined_media,
            fetcher=fetcher,
        )

    async def rearchive(self, rowids: Sequence[int]) -> int:
        """Archive ``rowids`` again through the Processor (after :meth:`open`); the rows done.

        For ``verify --repair`` and ``retry-failures``: the live cursor is not touched and the
        failures these rows had are resolved. A row whose Synapse event is still missing gets one
        more pass, then is recorded as a failure (the caller sets a tiny MISSING_EVENT_TIMEOUT_S).
        """
        self.processor.persist_cursor = False
        self.processor.resolve_failures = True
        size = self.config.batch_size
        ordered = sorted(set(rowids))
        for start in range(0, len(ordered), size):
            retry = await self.processor.process(ordered[start : start + size], owned=True)
            if retry:
                await self.processor.process(retry, owned=True)
        return self.processor.rows_done

    async def close(self) -> None:
        await self.sink.close()
        for pool in (self._bridge_pool, self._synapse_pool):
            if pool is not None:
                await pool.close()
        self._bridge_pool = self._synapse_pool = None

    async def run(self) -> None:
        """Archive until ``stop_event`` is set, then drain and return."""
        tasks = [
            asyncio.create_task(self.listener.run(self.stop_event), name="listener"),
            asyncio.create_task(self.hint_reader.run(self.stop_event), name="notify-hints"),
            asyncio.create_task(self._sweep_loop(), name="sweep"),
            asyncio.create_task(self._housekeeping_loop(), name="housekeeping"),
            asyncio.create_task(self._reconcile_loop(), name="reconcile"),
        ]
        if self.media is not None:
            tasks.append(asyncio.create_task(self.media.run(), name="media"))
            tasks.append(asyncio.create_task(self._media_catchup_loop(), name="media-catchup"))
        workers = [
            asyncio.create_task(self.workers.run(f"worker-{i}"), name=f"worker-{i}")
            for i in range(self.config.workers)
        ]
        self._workers_alive = workers
        tasks.append(asyncio.create_task(self._operations_loop(), name="operations"))
        tasks.append(asyncio.create_task(self._systemd_loop(), name="systemd"))
        watchdog = asyncio.create_task(self._watch_tasks([*tasks, *workers]), name="task-watch")
        await self._start_http()
        self.ready.set()
        try:
            await self.stop_event.wait()
        finally:
            self.notifier.stopping("draining in-flight work")
            watchdog.cancel()
            await self._shutdown(tasks, workers)
            await self.http.stop()

    async def _shutdown(
        self, tasks: list[asyncio.Task[None]], workers: list[asyncio.Task[None]]
    ) -> None:
        logger.info("stopping: draining in-flight work", extra={"action": "service_stopping"})
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.workers.cancel_retries()
        try:
            await asyncio.wait_for(self.queue.join(), self.config.shutdown_grace_s)
        except TimeoutError:
            logger.warning(
                "shutdown grace of %.0f s ran out with %d items queued; they will be replayed",
                self.config.shutdown_grace_s,
                self.queue.qsize(),
                extra={"action": "shutdown_grace_expired"},
            )
        for worker in workers:
            worker.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        with contextlib.suppress(errors.ArchiverError, TimeoutError):
            cursor = await asyncio.wait_for(asyncio.shield(self.processor.flush_cursor()), 5.0)
            logger.info("stopped at rowid %d", cursor, extra={"action": "service_stopped"})

    async def _watch_tasks(self, tasks: list[asyncio.Task[None]]) -> None:
        """No long-lived task dies silently: one that fails stops the service loudly."""
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                logger.error(
                    "task %s failed",
                    task.get_name(),
                    exc_info=task.exception(),
                    extra={"action": "task_failed"},
                )
                self.crashed = task.exception()
        self.stop_event.set()

    crashed: BaseException | None = None

    # -- loops ---------------------------------------------------------------------------------

    async def _sweep_loop(self) -> None:
        while not self.stop_event.is_set():
            await self._guarded("sweep", self.sweeper.sweep_once)
            await self._guarded("cursor", self.processor.flush_cursor)
            await self._guarded("gap", self._save_gap)
            await self.sweeper.wait_for_next(self._next_sweep_in_s())

    async def _media_catchup_loop(self) -> None:
        assert self.media is not None
        catchup = media_catchup.MediaCatchup(
            sink=self.sink,  # type: ignore[arg-type]
            archiver=self.media,
            rooms=self.rooms,
        )
        while not self.stop_event.is_set():
            await self._guarded("media_catchup", catchup.run_once)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop_event.wait(), self.config.media_catchup_interval_s)

    async def _reconcile_loop(self) -> None:
        # Slower than the sweep: it reads Synapse's stream, and only catches what the bridge
        # path cannot see (deleted rows, edits, reactions, redactions). Notifications of
        # deletions and reaction changes wake it early.
        while not self.stop_event.is_set():
            stats = await self._guarded("reconcile", self.reconciler.run_once)
            await self._guarded("late_keys", self._late_keys_step)
            if isinstance(stats, reconcile.Stats) and stats.more:
                # A long history (the first pass after a backfill): read on at once instead of
                # one page limit per interval.
                continue
            await self.reconciler.wait_for_next(self.config.reconcile_interval_s)

    async def _housekeeping_loop(self) -> None:
        last_rooms = time.monotonic()
        while not self.stop_event.is_set():
            await self._guarded("trigger", self.check_trigger)
            await self._guarded("lag", self._update_lag)
            if time.monotonic() - last_rooms >= ROOM_REFRESH_INTERVAL_S:
                await self._guarded("rooms", self.refresh_rooms)
                last_rooms = time.monotonic()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop_event.wait(), self.config.poll_interval_s)

    async def _guarded(self, what: str, action: Callable[[], Awaitable[object]]) -> object:
        """Run a periodic step; a transient failure is logged and counted, never fatal."""
        try:
            return await action()
        except (errors.SourceError, errors.SinkUnavailable) as exc:
            self.metrics.source_errors.labels(what, type(exc).__name__).inc()
            logger.warning("%s step failed: %s", what, exc, extra={"action": f"{what}_failed"})
            return None

    # -- steps ---------------------------------------------------------------------------------

    async def check_trigger(self) -> bool:
        status = await self.bridge.trigger_status(self.config.notify_channel)
        present = status.enabled
        self.metrics.trigger_present.set(1 if present else 0)
        now = time.monotonic()
        changed = present != self.health.trigger_present
        due = now - self.health.trigger_warned_at >= TRIGGER_WARNING_INTERVAL_S
        if not present and (changed or due):
            self.health.trigger_warned_at = now
            logger.warning(
                "NO NOTIFY TRIGGER on the bridge's message table (channel %s%s): archiving "
                "through the sweep alone, every %d ms. Install it as the bridge database owner: "
                "psql -d <bridge db> -f sql/triggers.sql",
                self.config.notify_channel,
                f"; found channels {status.channels}" if status.channels else "",
                self.config.poll_interval_ms,
                extra={"action": "trigger_missing"},
            )
        elif present and changed:
            logger.info("NOTIFY trigger present", extra={"action": "trigger_present"})
        self.health.trigger_present = present
        return present

    async def _update_lag(self) -> None:
        newest = await self.bridge.max_rowid()
        self.metrics.rowid_lag.set(max(0, newest - self.tracker.cursor))

    async def refresh_rooms(self) -> None:
        if self.config.auto_register_rooms:
            portals = await self.bridge.portals()
            if portals:
                await self.sink.write(models.ArchiveBatch(new_rooms=portals))
        self.rooms.current = await self._load_room_filter()

    async def _load_room_filter(self) -> roomfilter.RoomFilter:
        rows = await self.sink.monitored_rooms()
        return roomfilter.RoomFilter.build(
            configured=self.config.monitored_rooms,
            rows=rows,
            auto_register=self.config.auto_register_rooms,
        )

    # -- operations: probes, heartbeat, systemd --------------------------------------------------

    def liveness(self) -> probes.Report:
        return probes.liveness(
            stopping=self.stop_event.is_set(),
            crashed=self.crashed is not None,
            workers_alive=all(not w.done() for w in self._workers_alive),
            uptime_s=time.time() - self.health.started_at,
        )

    def readiness(self) -> probes.Report:
        if self.waiting_for is not None or self._opening is not None:
            # Still starting: name the database the start is waiting for.
            return probes.readiness({}, detail={"starting": True, "waiting_for": self.waiting_for})
        return probes.readiness(
            {
                **self._dependencies,
                "listener": self.listener.connected.is_set(),
                "trigger": self.health.trigger_present is True,
            }
        )

    async def probe_dependencies(self) -> probes.Report:
        """Ping every database; log what changed; return the readiness this gives."""
        timeout_s = self.config.health_check_timeout_s
        names = ("bridge", "synapse", "archive")
        reasons = await asyncio.gather(
            probes.ping(self.bridge.ping, timeout_s=timeout_s),
            probes.ping(self.synapse.ping, timeout_s=timeout_s),
            probes.ping(self.sink.ping, timeout_s=timeout_s),
        )
        found = {name: reason is None for name, reason in zip(names, reasons, strict=True)}
        why = dict(zip(names, reasons, strict=True))
        for name, ok in probes.transitions(self._dependencies, found):
            if ok:
                logger.info("%s database reachable again", name, extra={"action": "dependency_up"})
            else:
                logger.warning(
                    "%s database unreachable: %s",
                    name,
                    why[name],
                    extra={"action": "dependency_down", "dependency": name},
                )
        self._dependencies = found
        self.health.bridge_ok = found["bridge"]
        self.health.synapse_ok = found["synapse"]
        self.health.sink_ok = found["archive"]
        report = self.readiness()
        self.metrics.ready.set(1 if report.ok else 0)
        for name, ok in report.checks.items():
            self.metrics.dependency_up.labels(name).set(1 if ok else 0)
        return report

    async def save_heartbeat(self, report: probes.Report | None = None) -> None:
        report = report or self.readiness()
        pending = await archive_stats.failures_pending(self.sink)
        self.metrics.failures_pending.set(pending)
        beat = probes.heartbeat(
            now_s=time.time(),
            started_at_s=self.health.started_at,
            pid=os.getpid(),
            host=socket.gethostname(),
            version=listener.__version__,
            cursor=self.tracker.cursor,
            rowid_lag=int(metrics.value(self.metrics.rowid_lag)),
            queue_depth=self.queue.qsize(),
            queue_capacity=self.config.queue_size,
            failures_pending=pending,
            last_archived_s=metrics.value(self.metrics.last_archived) or None,
            ready=report,
        )
        await archive_stats.save_state(self.sink, probes.HEARTBEAT_KEY, beat)
        self.metrics.heartbeat_saved.set(beat["at"])
        self.notifier.status(probes.status_line(beat))

    async def _operations_loop(self) -> None:
        while not self.stop_event.is_set():
            await self.probe_dependencies()
            await self._guarded("heartbeat", self.save_heartbeat)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop_event.wait(), self.config.health_check_interval_s)

    async def _systemd_loop(self) -> None:
        """READY=1 once listening; then WATCHDOG=1 while the pipeline is healthy."""
        await probes.first_set(self.listener.connected, self.stop_event)
        if self.stop_event.is_set():
            return
        self.notifier.ready("archiving")
        interval_s = self.notifier.watchdog_interval_s
        if interval_s is None:
            await self.stop_event.wait()
            return
        progress, progress_at, fed = (-1, -1), time.monotonic(), True
        while not self.stop_event.is_set():
            now = time.monotonic()
            if (self.sweeper.sweeps, self.processor.rows_done) != progress:
                progress, progress_at = (self.sweeper.sweeps, self.processor.rows_done), now
            alive = probes.pipeline_alive(
                listener_connected=self.listener.connected.is_set(),
                workers_alive=self.liveness().checks["workers"],
                since_progress_s=now - progress_at,
                sweep_interval_s=self.config.poll_interval_s,
            )
            if alive:
                self.notifier.watchdog()
            if alive != fed:
                fed = alive
                if alive:
                    logger.info("watchdog pings resumed", extra={"action": "watchdog_resumed"})
                else:
                    logger.warning(
                        "pipeline stalled (not listening, no sweep or batch completed): "
                        "withholding watchdog pings (systemd restarts us after WatchdogSec)",
                        extra={"action": "watchdog_withheld"},
                    )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop_event.wait(), interval_s)
