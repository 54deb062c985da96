"""listener.flow.sweep: the sweep claims rows no faster than the workers free them.

A backfill of millions of rows used to claim every rowid above the cursor at once (the tracker's
set and the queue held them all): memory grew with the history. The bridge is a fake that
implements the sweep's one query over a list of existing rowids.
"""

from __future__ import annotations

import asyncio
import bisect

from listener.core import tracker
from listener.flow import pipeline, sweep
from listener.ops import metrics


class FakeBridge:
    def __init__(self, rowids: list[int]) -> None:
        self.rowids = rowids

    async def rowids_after_with_snapshot(
        self, cursor: int, *, limit: int
    ) -> tuple[list[int], tracker.Snapshot]:
        start = bisect.bisect_right(self.rowids, cursor)
        return self.rowids[start : start + limit], tracker.Snapshot(1, 1)


async def test_sweep__claims_at_most_the_bound_ahead_of_the_workers() -> None:
    rows = tracker.RowidTracker(0, gap_timeout_s=60.0)
    queue: asyncio.Queue[pipeline.WorkItem] = asyncio.Queue()
    sweeper = sweep.Sweeper(
        bridge=FakeBridge(list(range(1, 10_001))),  # type: ignore[arg-type]
        tracker=rows,
        queue=queue,
        metrics=metrics.Metrics(),
        batch_size=50,
        limit_rows=200,
        max_in_flight_rows=500,
    )
    peak = 0
    done = 0

    async def worker() -> None:
        nonlocal peak, done
        while done < 10_000:
            item = await queue.get()
            peak = max(peak, rows.in_flight)
            await asyncio.sleep(0)  # the workers take their time
            rows.complete(item.rowids)
            done += len(item.rowids)

    consumer = asyncio.create_task(worker())
    queued = await asyncio.wait_for(sweeper.sweep_once(), 10)
    await asyncio.wait_for(consumer, 10)
    assert queued == 10_000
    assert rows.advance(now=0.0) == 10_000
    assert peak <= 500 + 200  # the bound, plus the one page claimed when just under it


class FinishingBridge(FakeBridge):
    """Its read sees the rows as they were when it started; meanwhile the workers finished
    every claimed row and the cursor moved over them (a slow read on a loaded machine)."""

    def __init__(self, rowids: list[int], rows: tracker.RowidTracker) -> None:
        super().__init__(rowids)
        self.tracker = rows

    async def rowids_after_with_snapshot(
        self, cursor: int, *, limit: int
    ) -> tuple[list[int], tracker.Snapshot]:
        page = await super().rowids_after_with_snapshot(cursor, limit=limit)
        self.tracker.complete(list(range(1, self.tracker.max_known + 1)))
        self.tracker.advance(now=0.0)
        return page


async def test_sweep__does_not_queue_again_rows_the_cursor_passed_during_its_read() -> None:
    rows = tracker.RowidTracker(0, gap_timeout_s=60.0)
    queue: asyncio.Queue[pipeline.WorkItem] = asyncio.Queue()
    bridge = FinishingBridge([1, 2, 3, 4], rows)
    sweeper = sweep.Sweeper(
        bridge=bridge,  # type: ignore[arg-type]
        tracker=rows,
        queue=queue,
        metrics=metrics.Metrics(),
        batch_size=50,
        limit_rows=200,
    )
    assert await sweeper.sweep_once() == 4  # claims 1..4; its read "finishes" nothing yet
    bridge.rowids.append(5)  # a new row while the workers finish 1..4 during the next read

    assert await sweeper.sweep_once() == 1
    assert rows.cursor == 4
    queued = [queue.get_nowait().rowids for _ in range(queue.qsize())]
    assert queued == [(1, 2, 3, 4), (5,)]
