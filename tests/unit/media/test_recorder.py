"""Group commits of media rows, and a shutdown that lets the batch in flight finish."""

from __future__ import annotations

import asyncio

from listener.media import recorder
from listener.sinks import media_protocol


def _row(n: int) -> media_protocol.MediaRow:
    return media_protocol.MediaRow(event_id=f"$e{n}", mxc_url=f"mxc://x/{n}", kind="image",
                                   status="stored")  # fmt: skip


async def test_rows_submitted_together_share_one_write() -> None:
    writes: list[int] = []

    async def write(rows: list[media_protocol.MediaRow]) -> None:
        writes.append(len(rows))

    rec = recorder.Recorder(write)
    statuses = await asyncio.gather(*(rec.submit(_row(n)) for n in range(5)))
    assert statuses == ["stored"] * 5
    assert writes == [5]


async def test_close_waits_for_the_batch_in_flight_and_its_submitter_may_be_gone() -> None:
    started, release = asyncio.Event(), asyncio.Event()
    written: list[str] = []

    async def write(rows: list[media_protocol.MediaRow]) -> None:
        started.set()
        await release.wait()
        written.extend(r.event_id for r in rows)

    rec = recorder.Recorder(write)
    submitter = asyncio.ensure_future(rec.submit(_row(1)))
    await started.wait()
    submitter.cancel()  # the copy worker is cancelled by the shutdown
    closing = asyncio.create_task(rec.close())
    await asyncio.sleep(0.01)
    assert not closing.done()  # still waiting for the write
    release.set()
    await closing
    assert written == ["$e1"]


async def test_close_gives_up_on_a_write_that_hangs() -> None:
    async def write(rows: list[media_protocol.MediaRow]) -> None:
        await asyncio.sleep(3600)

    rec = recorder.Recorder(write)
    rec.submit(_row(1))
    await asyncio.sleep(0)
    await asyncio.wait_for(rec.close(timeout_s=0.05), 5)
