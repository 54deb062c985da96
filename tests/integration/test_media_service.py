"""Media through the running service (PostgreSQL sink): live, and after a crash between a
message's commit and its media intake (the catch-up)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from listener.media import catchup
from listener.sim import bridge
from tests.conftest import World, wait_until


async def _stored(world: World, event_id: str) -> bool:
    status = await world.archive.fetchval("SELECT status FROM media WHERE event_id = $1", event_id)
    return status == "stored"


async def test_media__image_archived_by_the_service_byte_exact(
    world: World, tmp_path: Path
) -> None:
    await world.sim.ensure_world(groups=1, dms=0)
    chat = world.sim.chats[0]
    png = bridge.make_png(16, 12, world.sim._rng)
    image = bridge.Media("image", png, "image/png", "cat.png", "a cat", 16, 12)
    async with world.running(media_archive_path=tmp_path / "archive") as svc:
        sent = await world.sim.send_media(chat, chat.members[0], image)
        await wait_until(lambda: _stored(world, sent.event_id), what="image stored")

        async def counted() -> bool:
            return svc.metrics.media_items.labels("stored")._value.get() == 1

        await wait_until(counted, what="media metric")
        assert svc.metrics.media_bytes.labels("stored")._value.get() == len(png)
    row = await world.archive.fetchrow("SELECT * FROM media WHERE event_id = $1", sent.event_id)
    digest = hashlib.sha256(png).hexdigest()
    assert row["sha256"] == digest
    assert (tmp_path / "archive" / row["storage_path"]).read_bytes() == png
    assert await world.archive.fetchval("SELECT count(*) FROM analysis_jobs") == 1


async def test_media__catch_up_archives_media_the_intake_never_saw(
    world: World, tmp_path: Path
) -> None:
    await world.sim.ensure_world(groups=1, dms=0)
    chat = world.sim.chats[0]
    png = bridge.make_png(8, 8, world.sim._rng)
    image = bridge.Media("image", png, "image/png", "lost.png")
    # Archived without media (as if the process died right after the message commit).
    async with world.running():
        sent = await world.sim.send_media(chat, chat.members[0], image)
        await world.wait_archived({sent.event_id})
    assert await world.archive.fetchval("SELECT count(*) FROM media") == 0
    async with world.running(media_archive_path=tmp_path / "archive") as svc:
        await wait_until(lambda: _stored(world, sent.event_id), what="media caught up")

        async def watermark_saved() -> bool:
            return await svc.sink.load_state(catchup.WATERMARK_KEY) is not None

        await wait_until(watermark_saved, what="catch-up watermark")
