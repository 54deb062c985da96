"""The processing pipeline: turn batches of bridge rowids into durable archive records.

A worker takes work items off the bounded queue, coalesces them into batches of at most
``batch_size`` rowids and hands each batch to the :class:`Processor`: one bridge query, one
Synapse query (plus one for display names when the bridge has not synced a contact), the pure
enrichment, one sink write. Transient errors after a row has been claimed are retried here with
backoff until they succeed or the service stops: a claimed row is never dropped, and the cursor
cannot pass it until it is durable.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from listener.core import (
    backoff,
    edits,
    enrich,
    errors,
    eventkind,
    failure_kinds,
    models,
    roomfilter,
    tracker,
)
from listener.core.networks import origin as networks_origin
from listener.ops import metrics
from listener.sinks import protocol as sink
from listener.sources import bridge as bridge_source
from listener.sources import synapse as synapse_source

logger = logging.getLogger(__name__)

T = TypeVar("T")
OnArchived = Callable[[list[models.ArchivedMessage], float], None]


@dataclass(frozen=True, slots=True)
class WorkItem:
    """Rowids to archive, read from the bridge table (never taken from a notification: see
    :mod:`listener.flow.hint_reader`). ``owned`` rowids are already claimed in the tracker."""

    rowids: tuple[int, ...] = ()
    owned: bool = False
    source: str = "notify"
    # False for rows re-archived after an UPDATE (an edit): the cursor is not involved.
    track: bool = True


class RoomDirectory:
    """The current room filter; replaced wholesale when the configuration is refreshed."""

    def __init__(self, current: roomfilter.RoomFilter) -> None:
        self.current = current


@dataclass(slots=True)
class _Plan:
    batch: models.ArchiveBatch = field(default_factory=models.ArchiveBatch)
    done: list[int] = field(default_factory=list)
    retry: list[int] = field(default_factory=list)
    received_ts_ms: list[int] = field(default_factory=list)


class Processor:
    """Archives batches of rowids; safe to call from several workers at once."""

    def __init__(
        self,
        *,
        bridge: bridge_source.BridgeSource,
        synapse: synapse_source.SynapseSource,
        sink: sink.Sink,
        tracker: tracker.RowidTracker,
        rooms: RoomDirectory,
        metrics: metrics.Metrics,
        missing_event_timeout_s: float,
        max_backoff_s: float = 30.0,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        on_archived: OnArchived | None = None,
        origin: networks_origin.Origin = networks_origin.WHATSAPP,
    ) -> None:
        self._bridge = bridge
        self._origin = origin
        self._synapse = synapse
        self._sink = sink
        self._tracker = tracker
        self._rooms = rooms
        self._metrics = metrics
        self._missing_timeout_s = missing_event_timeout_s
        self._max_backoff_s = max_backoff_s
        self._clock = clock
        self._rng = rng or random.Random()
        self._on_archived = on_archived
        self._first_missing: dict[int, float] = {}
        self._saved_cursor: int | None = None
        self.persist_cursor = True
        self.resolve_failures = False
        self.rows_done = 0

    async def process(self, rowids: list[int], *, owned: bool, track: bool = True) -> list[int]:
        """Archive the rows among ``rowids``; return the rowids to retry later.

        Rows are retried later only while their Synapse event is not there yet. ``track=False``
        re-archives rows (an edit updated them) without touching the cursor's bookkeeping.
        """
        rows = await self._retrying("bridge", lambda: self._bridge.rows(rowids))
        now = self._clock()
        found = {row.rowid for row in rows}
        if not track:
            fresh = found
        elif owned:
            # Seen earlier, gone now: deleted before we read it. Not an error, nothing to keep.
            self._tracker.complete(r for r in rowids if r not in found)
            fresh = found
        else:
            fresh = set(self._tracker.claim_new(found, now=now))
        rows = [row for row in rows if row.rowid in fresh]
        if not rows:
            return []
        plan = await self._retrying("synapse", lambda: self._plan(rows, now))
        cursor = self._tracker.advance(now=now)
        if self.persist_cursor and cursor != self._saved_cursor:
            plan.batch.cursor = cursor
        await self._write(plan.batch)
        if plan.batch.cursor is not None:
            self._saved_cursor = plan.batch.cursor
        if track:
            self._tracker.complete(plan.done)
        self.rows_done += len(plan.done)
        self._observe(plan)
        return plan.retry

    async def archive_events(self, event_ids: list[str]) -> int:
        """(Re-)archive message events by ID, with their bridge rows where those still exist.

        The reconciliation pass calls this for messages the archive lacks (a bridge row deleted
        before we read it, a whole chat deleted while we were down) and for messages whose
        edits or redaction it saw. Returns how many messages were written.
        """
        rows = await self._retrying("bridge", lambda: self._bridge.rows_by_mxid(event_ids))
        now = self._clock()
        plan = await self._retrying("synapse", lambda: self._plan(rows, now))
        orphans = sorted(set(event_ids) - {row.mxid for row in rows})
        if orphans:
            await self._retrying("synapse", lambda: self._plan_orphans(plan, orphans))
        await self._write(plan.batch)
        self._observe(plan)
        return len(plan.batch.messages)

    async def archive_reactions(self, event_ids: list[str]) -> int:
        """Archive reaction events (and their removal) by ID; returns how many were written."""
        events = await self._retrying("synapse", lambda: self._synapse.events(event_ids))
        plan = _Plan()
        room_filter = self._rooms.current
        for event in events.values():
            record = enrich.reaction(event)
            if record is None:
                continue
            if room_filter.decide(record.room_id, "") is roomfilter.Decision.SKIP:
                continue
            plan.batch.reactions.append(record)
        await self._write(plan.batch)
        self._observe(plan)
        return len(plan.batch.reactions)

    async def _plan_orphans(self, plan: _Plan, event_ids: list[str]) -> None:
        """Records from Synapse alone, for message events whose bridge row is gone."""
        events = await self._synapse.events(event_ids)
        messages = [e for e in events.values() if e.usable and _kind(e) is eventkind.Kind.MESSAGE]
        rooms = await self._bridge.room_info(sorted({e.room_id for e in messages}))
        names = await self._synapse.display_names((e.room_id, e.sender) for e in messages)
        room_filter = self._rooms.current
        for event in messages:
            room = rooms.get(event.room_id)
            chat_id = room.chat_id if room and room.chat_id else ""
            if room_filter.decide(event.room_id, chat_id) is roomfilter.Decision.SKIP:
                continue
            try:
                record = enrich.from_synapse_only(
                    event, room, names.get((event.room_id, event.sender))
                )
            except errors.MalformedEvent as exc:
                plan.batch.failures.append(
                    models.Failure(
                        kind=failure_kinds.MALFORMED_EVENT,
                        subject=event.event_id,
                        reason=str(exc),
                        event_id=event.event_id,
                        room_id=event.room_id,
                    )
                )
                continue
            plan.batch.messages.append(record)
            plan.batch.edits.extend(edits.edit_records(event.event_id, edits.edit_state(event)))

    async def flush_cursor(self) -> int:
        """Persist the cursor if it moved since the last write; return it."""
        cursor = self._tracker.advance(now=self._clock())
        if self.persist_cursor and cursor != self._saved_cursor:
            await self._sink.write(models.ArchiveBatch(cursor=cursor))
            self._saved_cursor = cursor
        self._metrics.cursor.set(cursor)
        return cursor

    async def _plan(self, rows: list[models.BridgeRow], now: float) -> _Plan:
        plan = _Plan()
        kept = self._select_rooms(rows, plan)
        event_ids = [row.mxid for row in kept if row.has_matrix_event]
        events = await self._synapse.events(event_ids)
        names = await self._display_names(kept, events)
        for row in kept:
            event = events.get(row.mxid)
            room_id = row.portal_mxid or (event.room_id if event else None)
            name = names.get((room_id or "", row.sender_mxid))
            self._plan_row(plan, row, event, name, now)
        return plan

    def _select_rooms(self, rows: list[models.BridgeRow], plan: _Plan) -> list[models.BridgeRow]:
        kept = []
        room_filter = self._rooms.current
        for row in rows:
            decision = room_filter.decide(row.portal_mxid, row.chat_id)
            if decision is roomfilter.Decision.SKIP:
                plan.done.append(row.rowid)
                continue
            if decision is roomfilter.Decision.REGISTER and row.portal_mxid:
                plan.batch.new_rooms.append(
                    models.MonitoredRoom(
                        room_id=row.portal_mxid,
                        whatsapp_id=row.chat_id,
                        room_name=row.portal_name or None,
                    )
                )
            kept.append(row)
        return kept

    async def _display_names(
        self, rows: list[models.BridgeRow], events: dict[str, models.SynapseEvent]
    ) -> dict[tuple[str, str], str]:
        pairs = []
        for row in rows:
            if row.ghost_name and row.ghost_name.strip():
                continue
            event = events.get(row.mxid)
            room_id = row.portal_mxid or (event.room_id if event else None)
            if room_id and row.sender_mxid:
                pairs.append((room_id, row.sender_mxid))
        return await self._synapse.display_names(pairs) if pairs else {}

    def _plan_row(
        self,
        plan: _Plan,
        row: models.BridgeRow,
        event: models.SynapseEvent | None,
        name: str | None,
        now: float,
    ) -> None:
        if not row.has_matrix_event:
            plan.batch.messages.append(enrich.from_bridge_only(row, name))
            plan.done.append(row.rowid)
            return
        if event is None or event.outlier:
            self._plan_missing(plan, row, now)
            return
        was_missing = self._first_missing.pop(row.rowid, None) is not None
        if was_missing or self.resolve_failures:
            # Resolved first, so a failure re-recorded below for this event stays open.
            plan.batch.resolved_subjects.append(row.mxid)
        if event.rejection_reason is not None:
            plan.batch.messages.append(enrich.from_bridge_only(row, name))
            plan.batch.failures.append(
                _failure(
                    row,
                    failure_kinds.REJECTED_EVENT,
                    f"Synapse rejected the event: {event.rejection_reason}",
                )
            )
        else:
            try:
                plan.batch.messages.append(enrich.enrich(row, event, name))
                plan.batch.edits.extend(edits.edit_records(row.mxid, edits.edit_state(event)))
                if event.received_ts_ms:
                    plan.received_ts_ms.append(event.received_ts_ms)
            except errors.MalformedEvent as exc:
                logger.warning("%s", exc, extra={"action": "malformed_event"})
                plan.batch.messages.append(enrich.from_malformed(row, event, name))
                plan.batch.failures.append(_failure(row, failure_kinds.MALFORMED_EVENT, str(exc)))
        plan.done.append(row.rowid)

    def _plan_missing(self, plan: _Plan, row: models.BridgeRow, now: float) -> None:
        first = self._first_missing.setdefault(row.rowid, now)
        if now - first < self._missing_timeout_s:
            plan.retry.append(row.rowid)
            return
        self._first_missing.pop(row.rowid, None)
        reason = f"Synapse has no usable event {row.mxid} after {now - first:.0f} s"
        logger.warning("%s (bridge rowid %d)", reason, row.rowid, extra={"action": "missing_event"})
        plan.batch.failures.append(_failure(row, failure_kinds.MISSING_EVENT, reason))
        plan.done.append(row.rowid)

    async def _write(self, batch: models.ArchiveBatch) -> None:
        if not batch and batch.cursor is None:
            return
        batch = self._origin.label_batch(batch)
        try:
            await self._retrying("sink", lambda: self._sink.write(batch))
        except errors.RowRejected as exc:
            await self._write_rejected(batch, exc)

    async def _write_rejected(self, batch: models.ArchiveBatch, exc: errors.RowRejected) -> None:
        """Bisect a rejected batch so one bad record cannot block the others.

        Messages, edits and reactions are split in halves until the bad one stands alone; it is
        recorded as a ``sink_rejected`` failure and everything else is written. The batch-level
        parts (failures, resolved failures, new rooms, the cursor) travel with the first half.
        """
        records: list[_Record] = [*batch.messages, *batch.edits, *batch.reactions]
        if len(records) <= 1:
            self._metrics.sink_errors.labels("rejected").inc(len(records))
            rest = _batch_of(
                [],
                failures=[*batch.failures, *(_rejected(record, exc) for record in records)],
                extras=batch,
            )
            await self._retrying("sink", lambda: self._sink.write(rest))
            return
        middle = len(records) // 2
        await self._write(_batch_of(records[:middle], failures=batch.failures, extras=batch))
        await self._write(_batch_of(records[middle:]))

    async def _retrying(self, stage: str, action: Callable[[], Awaitable[T]]) -> T:
        """Run ``action`` until it succeeds; transient errors back off, others propagate."""
        attempt = 0
        while True:
            try:
                return await action()
            except (errors.SourceError, errors.SinkUnavailable) as exc:
                delay = backoff.delay_s(
                    attempt, base_s=0.1, cap_s=self._max_backoff_s, rng=self._rng
                )
                self._count_error(stage, exc)
                logger.warning(
                    "%s failed, retrying in %.1f s: %s",
                    stage,
                    delay,
                    exc,
                    extra={"action": f"{stage}_retry", "attempt": attempt},
                )
                attempt += 1
                await asyncio.sleep(delay)

    def _count_error(self, stage: str, exc: Exception) -> None:
        kind = type(exc).__name__
        if stage == "sink":
            self._metrics.sink_errors.labels(kind).inc()
        else:
            self._metrics.source_errors.labels(stage, kind).inc()

    def _observe(self, plan: _Plan) -> None:
        committed_at = self._clock()
        batch = plan.batch
        for ts_ms in plan.received_ts_ms:
            self._metrics.latency.observe(max(0.0, committed_at - ts_ms / 1000.0))
        kinds = collections.Counter(
            (m.room_type or "unknown", m.message_type or "unknown") for m in batch.messages
        )
        for (room_type, message_type), count in kinds.items():
            self._metrics.messages_archived.labels(room_type, message_type).inc(count)
        for failure in batch.failures:
            self._metrics.failures_recorded.labels(failure.kind).inc()
        self._metrics.edits_archived.inc(len(batch.edits))
        self._metrics.reactions_archived.inc(len(batch.reactions))
        self._metrics.deletions_recorded.inc(sum(1 for m in batch.messages if m.deleted_at))
        if batch.messages:
            self._metrics.last_archived.set(committed_at)
        if self._on_archived is not None and batch.messages:
            self._on_archived(batch.messages, committed_at)


def _kind(event: models.SynapseEvent) -> eventkind.Kind:
    try:
        content = enrich.parse_event_json(event).get("content", {})
    except errors.MalformedEvent:
        return (
            eventkind.Kind.MESSAGE
            if event.event_type in eventkind.MESSAGE_TYPES
            else eventkind.Kind.OTHER
        )
    return eventkind.classify(event.event_type, content)


_Record = models.ArchivedMessage | models.ArchivedEdit | models.ArchivedReaction


def _batch_of(
    records: list[_Record],
    *,
    failures: list[models.Failure] | None = None,
    extras: models.ArchiveBatch | None = None,
) -> models.ArchiveBatch:
    return models.ArchiveBatch(
        messages=[r for r in records if isinstance(r, models.ArchivedMessage)],
        edits=[r for r in records if isinstance(r, models.ArchivedEdit)],
        reactions=[r for r in records if isinstance(r, models.ArchivedReaction)],
        failures=list(failures or []),
        resolved_subjects=extras.resolved_subjects if extras else [],
        new_rooms=extras.new_rooms if extras else [],
        cursor=extras.cursor if extras else None,
    )


def _rejected(record: _Record, exc: errors.RowRejected) -> models.Failure:
    if isinstance(record, models.ArchivedMessage):
        subject, rowid, room = record.event_id, record.bridge_rowid, record.room_id
    elif isinstance(record, models.ArchivedEdit):
        subject, rowid, room = record.edit_event_id, None, None
    else:
        subject, rowid, room = record.reaction_event_id, None, record.room_id
    return models.Failure(
        kind=failure_kinds.SINK_REJECTED,
        subject=subject,
        reason=str(exc),
        bridge_rowid=rowid,
        event_id=subject,
        room_id=room,
    )


def _failure(row: models.BridgeRow, kind: str, reason: str) -> models.Failure:
    return models.Failure(
        kind=kind,
        subject=row.mxid,
        reason=reason,
        bridge_rowid=row.rowid,
        event_id=row.mxid,
        room_id=row.portal_mxid,
        detail={
            "whatsapp_message_id": row.message_id,
            "whatsapp_chat_id": row.chat_id,
            "sender": row.sender_mxid,
            "timestamp_ns": row.timestamp_ns,
        },
    )
