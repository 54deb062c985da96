"""A real archive for the viewer's tests: filled by the real pipeline from the bridge simulator
(texts, replies, media of every kind, edits, reactions, a thread, a deletion, hostile HTML and a
hostile file name). Module-scoped: each test module that imports ``archive`` builds one."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

from listener import service, settings
from listener.sim import bridge as simulator
from listener.sim import demo, synapse_writer
from tests import pg
from tests.conftest import wait_until

TOKEN = "test-viewer-token-" + "x" * 20
HOSTILE_FILENAME = '"><img src=x onerror=alert(1)>.svg'


@dataclass
class Archive:
    url: str
    media_root: Path
    group_room: str
    sent: list[simulator.SentMessage]
    svg_event: str
    image_event: str


async def _fill(archive_url: str, bridge_url: str, synapse_url: str, tmp: Path) -> Archive:
    media_store = tmp / "media_store"
    media_store.mkdir()
    bridge = await asyncpg.create_pool(bridge_url, min_size=1, max_size=2)
    synapse = await asyncpg.create_pool(synapse_url, min_size=1, max_size=2)
    rng = random.Random(77)
    writer = synapse_writer.SqlSynapseWriter(
        synapse, server_name="example.org", media_store_path=media_store, rng=rng
    )
    sim = simulator.BridgeSimulator(bridge, writer, rng=rng)
    await sim.setup()
    config = settings.Settings(
        whatsapp_db_url=bridge_url,  # type: ignore[arg-type]
        synapse_db_url=synapse_url,  # type: ignore[arg-type]
        archive_db_url=archive_url,  # type: ignore[arg-type]
        media_store_path=media_store,
        media_archive_path=tmp / "archive",
        poll_interval_ms=200,
        reconcile_interval_s=0.2,
        reconcile_grace_s=0.0,
        _env_file=None,  # type: ignore[call-arg]
    )
    svc = service.Service(config)
    await svc.open()
    task = asyncio.create_task(svc.run())
    sent: list[simulator.SentMessage] = []
    try:
        await sim.ensure_world(groups=2, dms=1)
        for _ in range(25):
            sent.append(await sim.send_random())
        chat, who = sim.chats[1], sim.chats[1].members[0]
        image = await sim.send_media(
            chat,
            who,
            simulator.Media(
                "image", simulator.make_png(40, 30, rng), "image/png", "cat.png", "", 40, 30
            ),
        )
        svg = await sim.send_media(
            chat,
            who,
            simulator.Media(
                "file", b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>',
                "image/svg+xml", HOSTILE_FILENAME,
            ),
        )  # fmt: skip
        sent += [image, svg]
        Media = simulator.Media
        for media in (
            Media("video", rng.randbytes(2000), "video/mp4", "clip.mp4", "", 320, 240, 4000),
            Media("voice", rng.randbytes(900), "audio/ogg", "voice.ogg", duration_ms=7000),
            Media("sticker", simulator.make_png(32, 32, rng), "image/png", "sticker.png",
                  width=32, height=32),
        ):  # fmt: skip
            sent.append(await sim.send_media(chat, who, media))
        await demo.scene(sim, sent.append)

        async def settled() -> bool:
            conn = await asyncpg.connect(archive_url)
            try:
                messages = await conn.fetchval("SELECT count(*) FROM messages")
                reactions = await conn.fetchval("SELECT count(*) FROM reactions")
                deleted = await conn.fetchval(
                    "SELECT count(*) FROM messages WHERE deleted_at IS NOT NULL"
                )
                edited = await conn.fetchval("SELECT max(edit_count) FROM messages")
                pending = await conn.fetchval("SELECT count(*) FROM media WHERE status <> 'stored'")
            finally:
                await conn.close()
            return (
                messages == len(sent) and reactions == 3 and deleted == 1 and edited == 2
            ) and pending == 0

        await wait_until(settled, timeout_s=30, what="the scene archived")
    finally:
        svc.stop_event.set()
        await asyncio.wait_for(task, 30)
        await svc.close()
        await bridge.close()
        await synapse.close()
    return Archive(
        archive_url, tmp / "archive", sim.chats[1].room_id, sent, svg.event_id, image.event_id
    )


@pytest.fixture(scope="module")
async def archive(
    bridge_template: str,
    synapse_template: str,
    archive_template: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Archive]:
    suffix = uuid.uuid4().hex[:8]
    names = [f"t_bridge_{suffix}", f"t_synapse_{suffix}", f"t_archive_{suffix}"]
    bridge_url = await pg.create_database(names[0], template=bridge_template)
    synapse_url = await pg.create_database(names[1], template=synapse_template)
    archive_url = await pg.create_database(names[2], template=archive_template)
    try:
        yield await _fill(archive_url, bridge_url, synapse_url, tmp_path_factory.mktemp("viewer"))
    finally:
        for name in names:
            await pg.drop_database(name)
