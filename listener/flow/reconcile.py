"""The reconciliation pass: Synapse's event stream, for what the bridge table cannot tell.

The bridge's ``message`` table loses rows (revokes, delete-for-me, a deleted chat cascades, a
portal re-ID collision) and never records edit or redaction events. Synapse keeps them all. This
pass reads Synapse's events in persist order (``stream_ordering``) for every room the archive
knows — bridged portals, monitored rooms, rooms it already holds messages of (so a chat whose
portal was deleted stays covered) — and:

- archives any message event the archive lacks, with whatever bridge data remains;
- re-archives the target of every edit (``m.replace``) and redaction, so ``messages`` shows the
  latest content, the edit history and ``deleted_at``;
- records reactions and their removal.

Edits, reactions and redactions are never ``messages`` rows of their own. Stream positions can
become visible out of order (several persisters), so every pass re-reads a look-back window; all
writes are idempotent. Events younger than a grace period are left for the next pass: the bridge
path archives them first, with the bridge's data.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from listener.core import eventkind
from listener.flow import pipeline
from listener.ops import metrics
from listener.sinks import protocol as sink
from listener.sources import bridge as bridge_source
from listener.sources import synapse as synapse_source

logger = logging.getLogger(__name__)

CURSOR_KEY = "synapse_cursor"


@dataclass(slots=True)
class Stats:
    scanned: int = 0
    recovered: int = 0
    edited: int = 0
    reactions: int = 0
    redactions: int = 0
    cursor: int = 0
    more: bool = False  # stopped at the page limit with events still to read


@dataclass(slots=True)
class _Work:
    candidates: set[str]
    targets: set[str]
    reactions: set[str]
    redacted: set[str]


class Reconciler:
    def __init__(
        self,
        *,
        bridge: bridge_source.BridgeSource,
        synapse: synapse_source.SynapseSource,
        sink: sink.Sink,
        processor: pipeline.Processor,
        metrics: metrics.Metrics,
        batch_size: int,
        page_size: int = 1000,
        max_pages: int = 50,
        lookback_positions: int = 1000,
        grace_s: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._bridge = bridge
        self._synapse = synapse
        self._sink = sink
        self._processor = processor
        self._metrics = metrics
        self._batch_size = batch_size
        self._page_size = page_size
        self._max_pages = max_pages
        self._lookback = lookback_positions
        self._grace_s = grace_s
        self._clock = clock
        self._rooms: set[str] | None = None
        self._wakeup = asyncio.Event()

    def request(self, reason: str) -> None:
        """Ask for a pass soon (safe from synchronous callbacks)."""
        logger.debug("reconcile requested: %s", reason, extra={"action": "reconcile_requested"})
        self._wakeup.set()

    async def wait_for_next(self, interval_s: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wakeup.wait(), interval_s)
        self._wakeup.clear()

    async def run_once(self, *, from_start: bool = False) -> Stats:
        """One pass over the stream since the saved position (or from the start)."""
        state = await self._sink.load_state(CURSOR_KEY)
        saved = await self._clamped(
            int(state["stream_ordering"]) if state and not from_start else 0
        )
        position = max(0, saved - self._lookback)
        rooms = sorted(await self._known_rooms())
        young_after_ms = (self._clock() - self._grace_s) * 1000
        stats = Stats(cursor=saved)
        for _ in range(self._max_pages):
            events = await self._synapse.stream(
                position, room_ids=rooms, types=eventkind.STREAM_TYPES, limit=self._page_size
            )
            young = _first_young_message(events, young_after_ms)
            await self._apply(events, stats, young_from=young)
            if events:
                position = events[-1].stream_ordering
                # Stop short of a young message: the next pass looks at it again.
                safe = young - 1 if young is not None else position
                stats.cursor = max(stats.cursor, safe)
            if young is not None or len(events) < self._page_size:
                break
        else:
            # Only if this pass moved on: a page budget within the look-back window would
            # otherwise re-read the same pages for ever.
            stats.more = stats.cursor > saved
        if stats.cursor != saved:
            await self._sink.save_state(CURSOR_KEY, {"stream_ordering": stats.cursor})
        if stats.recovered:
            logger.warning(
                "reconciliation archived %d messages the bridge path had missed",
                stats.recovered,
                extra={"action": "reconcile_recovered"},
            )
        return stats

    async def _clamped(self, saved: int) -> int:
        """The saved position, never beyond what Synapse holds (a restored or replaced Synapse
        database would otherwise hide its events until the stream caught up)."""
        newest = await self._synapse.max_stream_ordering()
        if saved <= newest:
            return saved
        logger.warning(
            "the saved Synapse stream position %d is beyond Synapse's newest %d (a restored or "
            "replaced database?): reading from %d",
            saved,
            newest,
            newest,
            extra={"action": "reconcile_cursor_clamped"},
        )
        return newest

    async def _known_rooms(self) -> set[str]:
        if self._rooms is None:
            self._rooms = await self._sink.known_rooms()
        self._rooms.update(room.room_id for room in await self._bridge.portals())
        return self._rooms

    async def _apply(
        self,
        events: Sequence[synapse_source.StreamEvent],
        stats: Stats,
        *,
        young_from: int | None,
    ) -> None:
        work = _classify(events, young_from=young_from)
        stats.scanned += len(events)
        present = await self._sink.existing_event_ids(sorted(work.candidates))
        absent = work.candidates - present
        targets = set(work.targets)
        reactions = set(work.reactions)
        await self._sort_redacted(work.redacted, targets, reactions)
        stats.recovered += len(absent)
        stats.edited += len(work.targets)
        stats.reactions += len(work.reactions)
        stats.redactions += len(work.redacted)
        self._metrics.reconcile_recovered.inc(len(absent))
        for chunk in _chunks(sorted(absent | targets), self._batch_size):
            await self._processor.archive_events(chunk)
        for chunk in _chunks(sorted(reactions), self._batch_size):
            await self._processor.archive_reactions(chunk)

    async def _sort_redacted(
        self, redacted: set[str], messages: set[str], reactions: set[str]
    ) -> None:
        """Route each redacted event to the path that records it: message, or reaction."""
        if not redacted:
            return
        events = await self._synapse.events(sorted(redacted))
        for event in events.values():
            content = _content(event.json_text)
            kind = eventkind.classify(event.event_type, content)
            if kind is eventkind.Kind.REACTION:
                reactions.add(event.event_id)
            elif kind is eventkind.Kind.MESSAGE:
                messages.add(event.event_id)
            elif kind is eventkind.Kind.EDIT:
                _rel, original = eventkind.relates_to(content)
                if original:
                    messages.add(original)


def _classify(
    events: Sequence[synapse_source.StreamEvent], *, young_from: int | None = None
) -> _Work:
    """Sort a page into work. Messages from ``young_from`` on are left for the bridge path
    (it archives them first, with the bridge's data); edits, reactions and redactions are
    applied at once, since the bridge path never records them."""
    work = _Work(set(), set(), set(), set())
    for event in events:
        pdu = _pdu(event.json_text)
        content = pdu.get("content")
        content = content if isinstance(content, dict) else {}
        kind = eventkind.classify(event.event_type, content)
        if kind is eventkind.Kind.MESSAGE:
            if young_from is None or event.stream_ordering < young_from:
                work.candidates.add(event.event_id)
        elif kind is eventkind.Kind.EDIT:
            _rel, target = eventkind.relates_to(content)
            if target:
                work.targets.add(target)
        elif kind is eventkind.Kind.REACTION:
            work.reactions.add(event.event_id)
        elif kind is eventkind.Kind.REDACTION:
            target = eventkind.redacts(pdu)
            if target:
                work.redacted.add(target)
    return work


def _first_young_message(
    events: Sequence[synapse_source.StreamEvent], young_after_ms: float
) -> int | None:
    """The stream position of the first message event received after ``young_after_ms``."""
    for event in events:
        if event.received_ts_ms > young_after_ms and event.event_type in eventkind.MESSAGE_TYPES:
            return event.stream_ordering
    return None


def _pdu(json_text: str) -> dict[str, Any]:
    try:
        pdu = json.loads(json_text)
    except (ValueError, RecursionError):
        return {}
    return pdu if isinstance(pdu, dict) else {}


def _content(json_text: str) -> dict[str, Any]:
    content = _pdu(json_text).get("content")
    return content if isinstance(content, dict) else {}


def _chunks(items: list[str], size: int) -> list[list[str]]:
    return [items[i : i + size] for i in range(0, len(items), size)]
