"""MediaArchiver: copies the media of archived messages into the blob store, off the text path.

Intake is synchronous and O(refs) (:meth:`MediaArchiver.offer_archived` fits the pipeline's
``on_archived`` hook): it only finds the media references and queues them. A planner task
looks them up in Synapse (one query per batch and table), writes the rows that need no copy
and ``pending`` rows for the rest, and hands copies to copy tasks. A copy moves its bytes under
one of ``workers`` slots (files over 4 MiB) or ``small_file_workers`` slots (the rest), then
waits, slot released, for the blob store's group flush and the row's batched commit. So a
1 GB video occupies one copy slot and never the text pipeline. Copy jobs hold paths, never
bytes; when the copy queue is full a job stays a ``pending`` row and the retry scan picks it
up.

A row becomes ``stored`` only after the blob store has made the bytes durable and their size
and hashes checked out; then its analysis job is ensured. Missing files are retried on a slow
schedule from the archive's rows (so restarts lose nothing), re-reading the event from Synapse.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import json
import logging
import math
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from listener.core import backoff, errors, models
from listener.media import blobstore, plan, recorder, refs
from listener.media import source as media_source
from listener.sinks import media_protocol

logger = logging.getLogger(__name__)

T = TypeVar("T")

MediaAllowed = Callable[[str | None, str | None], bool]  # (room_id, chat_id) -> archive_media
# A file of at most one chunk is copied and hashed in one call on one thread; its cost is the
# file system's latency (an inode, a directory entry), not CPU, so many may run at once. A
# larger one keeps a core busy hashing for as long as it copies: those are the ones bounded
# by MEDIA_WORKERS, so that big videos never crowd the text path off the CPU.
SMALL_FILE_BYTES = blobstore.CHUNK_BYTES
AUTO_RETRY_STATUSES: tuple[media_protocol.Status, ...] = ("missing", "pending")
CLI_RETRY_STATUSES: tuple[media_protocol.Status, ...] = ("failed", "missing", "pending")
_SINK_ATTEMPTS = 5


class MetadataSource(Protocol):
    """What the archiver reads from Synapse (:class:`~listener.media.source.MediaSource`)."""

    async def local(self, media_ids: Iterable[str]) -> dict[str, media_source.SynapseMedia]: ...

    async def remote(
        self, keys: Iterable[tuple[str, str]]
    ) -> dict[tuple[str, str], media_source.SynapseMedia]: ...

    async def event_contents(
        self, event_ids: Sequence[str]
    ) -> dict[str, list[media_source.EventContent]]: ...


class MediaFetcher(Protocol):
    """The HTTP fallback (:class:`~listener.media.http_fallback.HttpMediaFetcher`)."""

    def open(
        self, server: str, media_id: str
    ) -> contextlib.AbstractAsyncContextManager[AsyncIterator[bytes]]: ...


@dataclass(frozen=True, slots=True)
class MediaMessage:
    """An archived event whose media should be archived (``archive_media``: room decision)."""

    event_id: str
    event_type: str
    content: Mapping[str, Any]
    room_id: str | None = None
    archive_media: bool = True

    @classmethod
    def from_archived(
        cls, message: models.ArchivedMessage, *, archive_media: bool = True
    ) -> MediaMessage | None:
        """From a pipeline record (its ``content_json`` is the event content)."""
        if not message.content_json or not message.has_matrix_event:
            return None
        try:
            content = json.loads(message.content_json)
        except ValueError:
            return None
        if not isinstance(content, dict):
            return None
        sticker = message.message_type == refs.STICKER
        event_type = refs.STICKER if sticker else refs.ROOM_MESSAGE
        return cls(message.event_id, event_type, content, message.room_id, archive_media)


class MediaArchiver:
    def __init__(
        self,
        *,
        source: MetadataSource,
        sink: media_protocol.MediaSink,
        store: blobstore.BlobStore,
        media_store_path: Path | None,
        server_name: str | None = None,
        download_media: bool = True,
        media_allowed: MediaAllowed | None = None,
        workers: int = 2,
        small_file_workers: int = 8,
        copies_in_flight: int = 64,
        queue_size: int = 10_000,
        upload_wait_s: float = 30.0,
        upload_poll_s: float = 1.0,
        missing_retry_s: float = 900.0,
        retry_batch: int = 1000,
        archive_quarantined: bool = False,
        fetcher: MediaFetcher | None = None,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self._source = source
        self._sink = sink
        self._store = store
        self._media_store_path = media_store_path
        self._server_name = server_name
        self._download_media = download_media
        self._media_allowed = media_allowed or (lambda room_id, chat_id: True)
        self._slots = asyncio.Semaphore(workers)
        self._small_file_slots = asyncio.Semaphore(small_file_workers)
        self._copies_in_flight = max(workers + small_file_workers, copies_in_flight)
        self._inbox: asyncio.Queue[plan.Item] = asyncio.Queue()
        self._copies: asyncio.Queue[plan.Copy] = asyncio.Queue(queue_size)
        self._upload_wait_s = upload_wait_s
        self._upload_poll_s = upload_poll_s
        self._missing_retry_s = missing_retry_s
        self._retry_batch = retry_batch
        self._archive_quarantined = archive_quarantined
        self._fetcher = fetcher
        self._clock = clock
        self._rng = rng or random.Random()
        self._inflight: set[media_protocol.MediaKey] = set()
        self._recorder = recorder.Recorder(self._record_batch, max_batch=retry_batch)
        self._timers: set[asyncio.Task[None]] = set()
        self._running = False
        self.stats: collections.Counter[str] = collections.Counter()
        # Called with (status, bytes) for every copy recorded: the service counts them.
        self.on_outcome: Callable[[str, int], None] | None = None

    # -- intake (synchronous, never blocks) -------------------------------------------------

    def offer_archived(self, messages: Sequence[models.ArchivedMessage], _at: float = 0.0) -> int:
        """The pipeline's ``on_archived`` hook: queue the media of durable messages."""
        found = []
        for message in messages:
            allowed = self._media_allowed(message.room_id, message.whatsapp_chat_id)
            media_message = MediaMessage.from_archived(message, archive_media=allowed)
            if media_message is not None:
                found.append(media_message)
        return self.offer(found)

    def offer(self, messages: Iterable[MediaMessage]) -> int:
        """Queue the media references of ``messages``; returns how many were found."""
        items = self.items(messages)
        for item in items:
            self._inbox.put_nowait(item)
        return len(items)

    def items(self, messages: Iterable[MediaMessage]) -> list[plan.Item]:
        """The media references of ``messages`` with the download decision applied."""
        items = []
        for message in messages:
            reason = None
            if not self._download_media:
                reason = "DOWNLOAD_MEDIA is false"
            elif not message.archive_media:
                reason = "archive_media is false for this room"
            for ref in refs.find_media(message.event_type, message.content):
                items.append(
                    plan.Item(
                        event_id=message.event_id,
                        room_id=message.room_id,
                        ref=ref,
                        allowed=reason is None,
                        skip_reason=reason,
                    )
                )
        return items

    @property
    def backlog(self) -> int:
        return self._inbox.qsize() + self._copies.qsize() + len(self._inflight)

    # -- direct use (tests, retries): everything done before returning ------------------------

    async def process(self, messages: Iterable[MediaMessage]) -> collections.Counter[str]:
        """Archive the media of ``messages`` now; returns the outcome count per status."""
        return await self.process_items(self.items(messages))

    async def process_items(self, items: list[plan.Item]) -> collections.Counter[str]:
        outcomes: collections.Counter[str] = collections.Counter()
        copies = await self._plan(items, outcomes)
        results = await asyncio.gather(*(self._execute(copy) for copy in copies))
        outcomes.update(results)
        return outcomes

    async def retry_media(
        self,
        statuses: Sequence[media_protocol.Status] = CLI_RETRY_STATUSES,
        *,
        older_than_s: float = 0.0,
        limit: int | None = None,
    ) -> collections.Counter[str]:
        """Retry media rows in ``statuses`` (``archiver-db retry-media``): outcome counts."""
        rows = await self._sink.retry_candidates(
            statuses, older_than_s=older_than_s, limit=limit or self._retry_batch
        )
        if not rows:
            return collections.Counter()
        events = await self._source.event_contents(sorted({r.event_id for r in rows}))
        items, gone = self._retry_items(rows, events)
        outcomes: collections.Counter[str] = collections.Counter()
        if gone:
            await self._write(gone)
            outcomes["failed"] += len(gone)
        outcomes.update(await self.process_items(items))
        logger.info(
            "media retry: %s", dict(outcomes), extra={"action": "media_retry", "rows": len(rows)}
        )
        return outcomes

    def _retry_items(
        self,
        rows: list[media_protocol.MediaState],
        events: dict[str, list[media_source.EventContent]],
    ) -> tuple[list[plan.Item], list[media_protocol.MediaRow]]:
        items: list[plan.Item] = []
        gone: list[media_protocol.MediaRow] = []
        for row in rows:
            item = self._retry_item(row, events.get(row.event_id, []))
            if item is None:
                reason = "the event no longer references this media (redacted or purged)"
                failed = media_protocol.MediaRow(
                    row.event_id, row.mxc_url, row.kind, "failed", reason
                )
                gone.append(failed)
            else:
                items.append(item)
        return items, gone

    def _retry_item(
        self, row: media_protocol.MediaState, events: list[media_source.EventContent]
    ) -> plan.Item | None:
        """The row's reference, found in its event or one of its edits (late media)."""
        for event in events:
            allowed = self._media_allowed(event.room_id, None)
            message = MediaMessage(
                row.event_id, event.event_type, event.content, event.room_id, allowed
            )
            for item in self.items([message]):
                if item.ref.mxc == row.mxc_url:
                    # A pending row this old has waited long enough for its async upload.
                    waited = -math.inf if row.status == "pending" else None
                    return dataclasses.replace(item, first_seen=waited)
        return None

    # -- the long-lived tasks ----------------------------------------------------------------

    async def run(self) -> None:
        """Planner, copy workers and the slow retry scan, until cancelled."""
        self._running = True
        tasks = [asyncio.create_task(self._planner(), name="media-planner")]
        tasks += [
            # More copiers than copy slots: a copier whose bytes are copied waits for its
            # blob's group flush and its row's commit without its slot, and those waits
            # are shared by everyone waiting at the time: the more blobs wait together,
            # the fewer flushes and commits. The semaphore still bounds concurrent copies.
            asyncio.create_task(self._copier(), name=f"media-copy-{n}")
            for n in range(self._copies_in_flight)
        ]
        tasks.append(asyncio.create_task(self._retrier(), name="media-retry"))
        try:
            await asyncio.gather(*tasks)
        finally:
            self._running = False
            for task in [*tasks, *self._timers]:
                task.cancel()
            await asyncio.gather(*tasks, *self._timers, return_exceptions=True)
            await self._recorder.close()

    async def drain(self) -> None:
        """Wait until everything offered so far is planned and copied (not upload waits)."""
        await self._inbox.join()
        await self._copies.join()

    async def _planner(self) -> None:
        while True:
            batch = [await self._inbox.get()]
            while not self._inbox.empty() and len(batch) < self._retry_batch:
                batch.append(self._inbox.get_nowait())
            try:
                for copy in await self._plan(batch, self.stats):
                    self._enqueue_copy(copy)
            except errors.ArchiverError as exc:
                # The rows (if any) stay pending; the retry scan comes back for them.
                logger.warning("media planning failed: %s", exc, extra={"action": "media_plan"})
            finally:
                for _ in batch:
                    self._inbox.task_done()

    def _enqueue_copy(self, copy: plan.Copy) -> None:
        try:
            self._copies.put_nowait(copy)
        except asyncio.QueueFull:
            self.stats["deferred"] += 1
            logger.warning(
                "media copy queue full; %s left pending for the retry scan",
                copy.item.mxc_url,
                extra={"action": "media_deferred"},
            )

    async def _copier(self) -> None:
        while True:
            copy = await self._copies.get()
            try:
                self.stats[await self._execute(copy)] += 1
            finally:
                self._copies.task_done()

    async def _retrier(self) -> None:
        while True:
            await asyncio.sleep(self._missing_retry_s)
            try:
                await self.retry_media(AUTO_RETRY_STATUSES, older_than_s=self._missing_retry_s)
            except errors.ArchiverError as exc:
                logger.warning("media retry scan failed: %s", exc, extra={"action": "media_retry"})

    # -- planning ----------------------------------------------------------------------------

    async def _plan(
        self, items: list[plan.Item], outcomes: collections.Counter[str]
    ) -> list[plan.Copy]:
        """Write every row that needs no copy (and pending rows); return the copies to run."""
        items = [i for i in {i.key: i for i in items}.values() if i.key not in self._inflight]
        states = await self._sink.media_states([i.key for i in items])
        stored = [states[i.key].id for i in items if _is_stored(states.get(i.key))]
        todo = [i for i in items if not _is_stored(states.get(i.key))]
        outcomes["stored"] += len(stored)
        local_ids, remote_keys = plan.server_lookups(todo, self._server_name)
        local = await self._source.local(local_ids)
        remote = await self._source.remote(remote_keys)
        actions = [self._decide(item, local, remote) for item in todo]
        rows = [action.row for action in actions]
        if rows:
            await self._write(rows)
        if stored:
            await self._sink.ensure_analysis_jobs(stored)  # a replay heals a lost job
        for action in actions:
            if isinstance(action, plan.Wait):
                self._wait_for_upload(action.item)
            if not isinstance(action, plan.Copy):
                outcomes[action.row.status] += 1
        return [action for action in actions if isinstance(action, plan.Copy)]

    def _decide(
        self,
        item: plan.Item,
        local: dict[str, media_source.SynapseMedia],
        remote: dict[tuple[str, str], media_source.SynapseMedia],
    ) -> plan.Action:
        action = plan.decide(
            item,
            server_name=self._server_name,
            local=local,
            remote=remote,
            archive_quarantined=self._archive_quarantined,
        )
        if not isinstance(action, plan.Wait):
            return action
        now = self._clock()
        first_seen = now if item.first_seen is None else item.first_seen
        if now - first_seen >= self._upload_wait_s:
            waited = "" if math.isinf(first_seen) else f" after {now - first_seen:.0f} s"
            return plan.final(action.row, "missing", f"async upload not finished{waited}")
        return plan.Wait(dataclasses.replace(item, first_seen=first_seen), action.row)

    def _wait_for_upload(self, item: plan.Item) -> None:
        """Look again soon; without the run loop, the retry scan does it later."""
        if not self._running:
            return

        async def later() -> None:
            await asyncio.sleep(self._upload_poll_s)
            self._inbox.put_nowait(item)

        task = asyncio.create_task(later(), name="media-upload-wait")
        self._timers.add(task)
        task.add_done_callback(self._timers.discard)

    # -- copying -----------------------------------------------------------------------------

    async def _execute(self, copy: plan.Copy) -> str:
        """Copy under a worker slot, then record the outcome (batched with other copies)."""
        key = copy.item.key
        if key in self._inflight:
            return "pending"
        self._inflight.add(key)
        try:
            row = await self._copy(copy)
            # The slot was freed once the bytes moved: the next copies run while this row
            # waits for durability and its commit.
            status = await self._recorder.submit(row)
            if self.on_outcome is not None:
                self.on_outcome(status, row.size_bytes or 0)
            return status
        finally:
            self._inflight.discard(key)

    async def _record_batch(self, rows: list[media_protocol.MediaRow]) -> None:
        ids = await self._write(rows)
        stored = [ids[row.key] for row in rows if row.status == "stored" and row.key in ids]
        if stored:
            await self._sink_call(lambda: self._sink.ensure_analysis_jobs(stored))

    async def _copy(self, copy: plan.Copy) -> media_protocol.MediaRow:
        row = copy.row
        try:
            blob = await self._ingest(copy)
        except FileNotFoundError as exc:
            return _with(row, "missing", str(exc))
        except errors.MediaIntegrityError as exc:
            logger.warning("%s: %s", copy.item.mxc_url, exc, extra={"action": "media_integrity"})
            return _with(row, "failed", str(exc))
        except errors.MediaRejected as exc:
            return _with(row, "rejected", str(exc))
        except errors.SinkUnavailable as exc:
            # The blob store (e.g. Supabase Storage) is down: not this file's fault, so the
            # row stays pending and the automatic retry scan comes back for it.
            return _with(row, "pending", f"storage unavailable: {exc}")
        except OSError as exc:
            return _with(row, "failed", f"I/O error: {exc.strerror or exc}")
        return dataclasses.replace(
            row,
            status="stored",
            sha256=blob.sha256,
            source_sha256=blob.source_sha256,
            storage_path=blob.key,
            size_bytes=blob.size,
        )

    async def _ingest(self, copy: plan.Copy) -> blobstore.StoredBlob:
        """From the media_store; from the homeserver's media API when the file is absent."""
        small = copy.expected_size is not None and copy.expected_size <= SMALL_FILE_BYTES
        options: dict[str, Any] = {
            # The store holds the slot while the bytes move.
            "slot": self._small_file_slots if small else self._slots,
            "decrypt": copy.decrypt,
            "expected_size": copy.expected_size,
            "expected_source_sha256": copy.expected_source_sha256,
        }
        try:
            if self._media_store_path is None:
                raise FileNotFoundError("MEDIA_STORE_PATH is not set")
            path = refs.in_store(self._media_store_path, copy.relative_path)
            try:
                return await self._store.ingest(path, **options)
            except FileNotFoundError:
                raise FileNotFoundError(
                    f"{copy.relative_path} is not in the media store (storage provider, "
                    "direct media, or purged)"
                ) from None
        except FileNotFoundError as local_missing:
            if self._fetcher is None:
                raise
            try:
                async with self._fetcher.open(copy.server, copy.media_id) as chunks:
                    return await self._store.ingest(chunks, **options)
            except FileNotFoundError as exc:
                raise FileNotFoundError(f"{local_missing}; HTTP fallback: {exc}") from None

    # -- sink writes -------------------------------------------------------------------------

    async def _write(
        self, rows: list[media_protocol.MediaRow]
    ) -> dict[media_protocol.MediaKey, int]:
        return await self._sink_call(lambda: self._sink.upsert_media(rows))

    async def _sink_call(self, action: Callable[[], Awaitable[T]]) -> T:
        for attempt in range(_SINK_ATTEMPTS):
            try:
                return await action()
            except errors.SinkUnavailable:
                if attempt == _SINK_ATTEMPTS - 1:
                    raise
                await asyncio.sleep(backoff.delay_s(attempt, base_s=0.2, cap_s=5.0, rng=self._rng))
        raise AssertionError("unreachable")  # pragma: no cover


def _is_stored(state: media_protocol.MediaState | None) -> bool:
    return state is not None and state.status == "stored"


def _with(
    row: media_protocol.MediaRow, status: media_protocol.Status, reason: str
) -> media_protocol.MediaRow:
    return dataclasses.replace(row, status=status, status_reason=reason)
