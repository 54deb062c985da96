"""The worker coroutines: take work items off the bounded queue, batch them, archive them.

A worker coalesces queued items into batches of at most ``batch_size`` rowids (one kind of
item per batch: claimed or not, tracked or not) and hands each to the
:class:`~listener.flow.pipeline.Processor`. Spare batches of a large item go back to the queue so
that other workers share it. Rows whose Synapse event is not there yet are re-queued after a
delay; they stay claimed, so the cursor waits for them.
"""

from __future__ import annotations

import asyncio

from listener.flow import pipeline
from listener.ops import metrics


class Workers:
    """The worker coroutines and the bounded queue they share."""

    def __init__(
        self,
        *,
        processor: pipeline.Processor,
        queue: asyncio.Queue[pipeline.WorkItem],
        batch_size: int,
        retry_delay_s: float,
        metrics: metrics.Metrics,
    ) -> None:
        self._processor = processor
        self._queue = queue
        self._batch_size = batch_size
        self._retry_delay_s = retry_delay_s
        self._metrics = metrics
        self._retry_tasks: set[asyncio.Task[None]] = set()

    async def run(self, name: str) -> None:
        """One worker: forever take a batch off the queue and archive it."""
        while True:
            items = [await self._queue.get()]
            try:
                items.extend(self._coalesce(items[0]))
                for (owned, track), rowids in self._batches(items):
                    retry = await self._processor.process(rowids, owned=owned, track=track)
                    if retry and track:
                        self._retry_later(retry)
            finally:
                for _ in items:
                    self._queue.task_done()
                self._metrics.queue_depth.set(self._queue.qsize())

    def _coalesce(self, first: pipeline.WorkItem) -> list[pipeline.WorkItem]:
        """More queued items, without waiting, up to a batch's worth of rowids."""
        taken: list[pipeline.WorkItem] = []
        size = len(first.rowids)
        while size < self._batch_size and not self._queue.empty():
            item = self._queue.get_nowait()
            taken.append(item)
            size += len(item.rowids)
        return taken

    def _batches(self, items: list[pipeline.WorkItem]) -> list[tuple[tuple[bool, bool], list[int]]]:
        """Split into batches of one kind; spare batches go back to the queue for others."""
        batches: list[tuple[tuple[bool, bool], list[int]]] = []
        for kind in ((True, True), (False, True), (False, False), (True, False)):
            rowids = sorted(
                {r for item in items if (item.owned, item.track) == kind for r in item.rowids}
            )
            for start in range(0, len(rowids), self._batch_size):
                batches.append((kind, rowids[start : start + self._batch_size]))
        mine, spare = batches[:1], batches[1:]
        for (owned, track), rowids in spare:
            item = pipeline.WorkItem(rowids=tuple(rowids), owned=owned, source="split", track=track)
            try:
                self._queue.put_nowait(item)
            except asyncio.QueueFull:
                mine.append(((owned, track), rowids))
        return mine

    def _retry_later(self, rowids: list[int]) -> None:
        # The rows stay claimed (the cursor waits for them) until the retry has run.
        task = asyncio.create_task(self._requeue(rowids), name="missing-event-retry")
        self._retry_tasks.add(task)
        task.add_done_callback(self._retry_tasks.discard)

    async def _requeue(self, rowids: list[int]) -> None:
        await asyncio.sleep(self._retry_delay_s)
        await self._queue.put(pipeline.WorkItem(rowids=tuple(rowids), owned=True, source="retry"))

    def cancel_retries(self) -> None:
        for task in list(self._retry_tasks):
            task.cancel()

    @property
    def pending_retries(self) -> int:
        return len(self._retry_tasks)
