"""listener.flow.hint_reader: notified ranges become rowids read from the table, never lists.

The bridge is a fake over a sorted list of existing rowids that implements the two queries the
reader sends; it counts them, so the tests can say how much work a range cost.
"""

from __future__ import annotations

import asyncio
import bisect

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from listener.core import errors, tracker
from listener.flow import hint_reader, pipeline
from listener.ops import metrics

MAX = 2**63 - 1


class FakeBridge:
    def __init__(self, rowids: list[int]) -> None:
        self.rowids = sorted(set(rowids))
        self.pages = 0
        self.rows_read = 0
        self.max_queries = 0
        self.fail_next = False

    async def rowids_between(self, lo: int, hi: int, *, limit: int) -> list[int]:
        if self.fail_next:
            self.fail_next = False
            raise errors.SourceError("bridge query failed: connection reset")
        self.pages += 1
        start = bisect.bisect_left(self.rowids, lo)
        end = bisect.bisect_right(self.rowids, hi)
        page = self.rowids[start : min(end, start + limit)]
        self.rows_read += len(page)
        return page

    async def max_rowid(self) -> int:
        self.max_queries += 1
        return self.rowids[-1] if self.rowids else 0


def _reader(
    bridge: FakeBridge, *, cursor: int = 0, batch_size: int = 10, queue_size: int = 0, **kw: float
) -> tuple[hint_reader.HintReader, asyncio.Queue[pipeline.WorkItem], metrics.Metrics]:
    queue: asyncio.Queue[pipeline.WorkItem] = asyncio.Queue(queue_size)
    m = metrics.Metrics()
    reader = hint_reader.HintReader(
        bridge=bridge,
        tracker=tracker.RowidTracker(cursor, gap_timeout_s=100.0),
        queue=queue,
        metrics=m,
        batch_size=batch_size,
        clock=lambda: 0.0,
        **kw,  # type: ignore[arg-type]
    )
    return reader, queue, m


def _drain(queue: asyncio.Queue[pipeline.WorkItem]) -> list[pipeline.WorkItem]:
    items = []
    while not queue.empty():
        items.append(queue.get_nowait())
    return items


def _queued_rowids(queue: asyncio.Queue[pipeline.WorkItem]) -> list[int]:
    return [r for item in _drain(queue) for r in item.rowids]


ranges_strategy = st.lists(
    st.tuples(st.integers(0, 400), st.integers(0, 400)).map(lambda t: (min(t), max(t))),
    max_size=6,
)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(
    existing=st.sets(st.integers(1, 300), max_size=120),
    cursor=st.integers(0, 300),
    notes=st.lists(ranges_strategy, max_size=5),
)
def test_inserts__rows_read_are_exactly_the_existing_rows_inside_the_clamped_ranges(
    existing: set[int], cursor: int, notes: list[list[tuple[int, int]]]
) -> None:
    async def scenario() -> None:
        bridge = FakeBridge(sorted(existing))
        reader, queue, _ = _reader(bridge, cursor=cursor, batch_size=7)
        for i, ranges in enumerate(notes):
            reader.offer("INSERT", sorted(set(ranges)), sender=i)
        await reader.read_once()
        inside = {r for ranges in notes for lo, hi in ranges for r in range(lo, hi + 1)}
        queued = _queued_rowids(queue)
        assert sorted(queued) == sorted(r for r in existing if r in inside and r > cursor)
        assert len(queued) == len(set(queued))  # each once
        assert bridge.rows_read == len(queued)  # no row read that was not wanted
        # The same notifications again: those rows are claimed, nothing is read twice.
        for ranges in notes:
            reader.offer("INSERT", sorted(set(ranges)), sender=None)
        await reader.read_once()
        assert _queued_rowids(queue) == []

    asyncio.run(scenario())


async def test_inserts__a_range_of_the_whole_bigint_space_costs_a_few_queries() -> None:
    bridge = FakeBridge(list(range(1, 1001)))
    reader, queue, m = _reader(bridge, cursor=990, batch_size=100)
    reader.offer("INSERT", [(0, MAX)], sender=4242)
    await reader.read_once()
    assert _queued_rowids(queue) == list(range(991, 1001))
    assert bridge.pages == 1
    assert bridge.max_queries == 1
    assert m.notifications.labels("clamped")._value.get() == 1
    # Again and again: every row of it is already claimed; a page and a max query each time.
    for _ in range(50):
        reader.offer("INSERT", [(0, MAX)], sender=4242)
        await reader.read_once()
    assert _queued_rowids(queue) == []
    assert bridge.rows_read == 10 + 50 * 0  # rows above the newest seen: none exist


async def test_inserts__a_real_notification_costs_one_page_and_no_max_query() -> None:
    bridge = FakeBridge([1, 2, 3])
    reader, queue, m = _reader(bridge)
    reader.offer("INSERT", [(1, 3)], sender=77)
    await reader.read_once()
    assert [item.rowids for item in _drain(queue)] == [(1, 2, 3)]
    assert (bridge.pages, bridge.max_queries) == (1, 0)
    assert m.notifications.labels("clamped")._value.get() == 0


async def test_inserts__a_wide_range_is_paged_by_batch_size() -> None:
    bridge = FakeBridge(list(range(1, 1001)))
    reader, queue, _ = _reader(bridge, batch_size=100)
    reader.offer("INSERT", [(1, 1000)], sender=1)
    await reader.read_once()
    items = _drain(queue)
    assert [len(item.rowids) for item in items] == [100] * 10
    assert all(item.owned for item in items)  # claimed: the processor need not claim again


async def test_inserts__a_failed_read_keeps_the_range_pending() -> None:
    bridge = FakeBridge([5, 6])
    reader, queue, _ = _reader(bridge)
    reader.offer("INSERT", [(5, 6)], sender=1)
    bridge.fail_next = True
    with pytest.raises(errors.SourceError):
        await reader.read_once()
    await reader.read_once()
    assert _queued_rowids(queue) == [5, 6]


async def test_updates__rearchived_at_a_bounded_rate_and_never_tracked() -> None:
    bridge = FakeBridge(list(range(1, 10_001)))
    reader, queue, m = _reader(
        bridge, batch_size=100, rearchive_rows_per_s=500.0, rearchive_burst_rows=300
    )
    reader.offer("UPDATE", [(0, MAX)], sender=9)
    for _ in range(20):  # the clock stands still: only the burst may be spent
        await reader.read_once()
    items = _drain(queue)
    assert sum(len(item.rowids) for item in items) == 300
    assert all(not item.track and not item.owned for item in items)
    assert m.notifications.labels("clamped")._value.get() == 1
    assert reader.backlog_ranges == 1


async def test_updates__a_real_edit_is_read_at_once() -> None:
    bridge = FakeBridge([1, 2, 3])
    reader, queue, _ = _reader(bridge)
    reader.offer("UPDATE", [(2, 2)], sender=5)
    await reader.read_once()
    assert [(item.rowids, item.track) for item in _drain(queue)] == [((2,), False)]
    assert reader.backlog_ranges == 0


async def test_run__reads_on_offer_and_survives_a_failing_bridge() -> None:
    bridge = FakeBridge([1, 2])
    reader, queue, m = _reader(bridge, max_backoff_s=0.01)
    stop = asyncio.Event()
    task = asyncio.create_task(reader.run(stop))
    bridge.fail_next = True
    reader.offer("INSERT", [(1, 2)], sender=1)
    item = await asyncio.wait_for(queue.get(), 5)
    assert item.rowids == (1, 2)
    assert m.source_errors.labels("notify_hints", "SourceError")._value.get() == 1
    stop.set()
    await asyncio.wait_for(task, 5)


async def test_updates__kept_when_the_newest_rowid_cannot_be_read() -> None:
    bridge = FakeBridge([1, 2, 3])
    reader, queue, _ = _reader(bridge)

    async def broken() -> int:
        raise errors.SourceError("bridge query failed: connection reset")

    bridge.max_rowid = broken  # type: ignore[method-assign]
    reader.offer("UPDATE", [(2, 99)], sender=5)
    with pytest.raises(errors.SourceError):
        await reader.read_once()
    del bridge.max_rowid  # the class's own again
    await reader.read_once()
    assert [(item.rowids, item.track) for item in _drain(queue)] == [((2, 3), False)]
