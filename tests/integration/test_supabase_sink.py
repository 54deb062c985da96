"""The Supabase sink end to end: the real supabase client (postgrest-py, storage3, httpx) against
the Supabase stub (tests/supabase_stub: PostgREST and Storage subsets on the test's real archive
database), or against a real Supabase-like stack when SUPABASE_TEST_URL, SUPABASE_TEST_KEY and
SUPABASE_TEST_DB_URL are set (docker-compose.test.yml; fault-injection tests then skip).
"""

from __future__ import annotations

import asyncio
import collections
import gc
import hashlib
import os
import random
import sys
import time
import tracemalloc
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from listener import service
from listener.core import errors, models
from listener.export import main as export_main
from listener.export import run as export_run
from listener.media import archiver as media
from listener.media import source as media_source
from listener.media import supabase_blobstore
from listener.sim import bridge, megolm
from listener.sinks.supabase import api as supabase_api
from listener.sinks.supabase import media_sink
from listener.sinks.supabase import sink as supabase_sink
from listener.viewer import app as viewer_app
from listener.viewer import media_files
from listener.viewer import reader as viewer_reader
from listener.viewer import serve as viewer_serve
from tests import pg
from tests.conftest import World, wait_until
from tests.supabase_stub import Fault, SupabaseStub

REAL_URL = os.environ.get("SUPABASE_TEST_URL")
REAL_KEY = os.environ.get("SUPABASE_TEST_KEY")
REAL_DB_URL = os.environ.get("SUPABASE_TEST_DB_URL")
ARCHIVE_TABLES = (
    "messages, message_edits, reactions, archive_failures, monitored_rooms, archiver_state, "
    "analysis_jobs, media"
)
FAST = {"reconcile_grace_s": 0.0, "reconcile_interval_s": 0.3}
MiB = 1024 * 1024


@dataclass
class Supa:
    url: str
    key: str
    archive: asyncpg.Pool  # the database behind the REST API, for assertions
    stub: SupabaseStub | None
    staging: Path

    def settings(self, **overrides: Any) -> dict[str, Any]:
        values: dict[str, Any] = {
            "supabase_url": self.url,
            "supabase_key": self.key,
            "supabase_retry_budget_s": 1.0,
            "supabase_timeout_s": 5.0,
        }
        return values | overrides

    def api(self, **overrides: Any) -> supabase_api.SupabaseApi:
        options: dict[str, Any] = {"retry_budget_s": 2.0, "timeout_s": 5.0} | overrides
        return supabase_api.SupabaseApi(self.url, self.key, **options)

    def need_stub(self) -> SupabaseStub:
        if self.stub is None:
            pytest.skip("fault injection needs the stub (not a real stack)")
        return self.stub

    async def wait_archived(self, event_ids: set[str], *, timeout_s: float = 15.0) -> None:
        async def present() -> bool:
            n = await self.archive.fetchval(
                "SELECT count(*) FROM messages WHERE event_id = ANY($1::text[])", list(event_ids)
            )
            return int(n) == len(event_ids)

        await wait_until(present, timeout_s=timeout_s, what=f"{len(event_ids)} messages")

    async def cursor(self) -> int:
        value = await self.archive.fetchval(
            "SELECT (value->>'rowid')::bigint FROM archiver_state WHERE name = 'bridge_cursor'"
        )
        return int(value or 0)


@pytest.fixture
async def supa(world: World, tmp_path: Path) -> AsyncIterator[Supa]:
    if REAL_URL and REAL_KEY and REAL_DB_URL:
        pool = await asyncpg.create_pool(REAL_DB_URL, min_size=1, max_size=4)
        await pool.execute(f"TRUNCATE {ARCHIVE_TABLES} RESTART IDENTITY")
        try:
            yield Supa(REAL_URL, REAL_KEY, pool, None, tmp_path / "staging")
        finally:
            await pool.close()
        return
    stub = SupabaseStub(world.archive_url, tmp_path / "storage")
    await stub.start()
    try:
        yield Supa(stub.url, stub.key, world.archive, stub, tmp_path / "staging")
    finally:
        await stub.stop()


async def _one_chat(world: World) -> Any:
    await world.sim.ensure_world(groups=1, dms=0)
    return world.sim.chats[0]


def _count(stub: SupabaseStub | None, method: str, path: str, status: int | None = None) -> int:
    if stub is None:
        return 0
    return sum(1 for m, p, s in stub.log if m == method and p == path and status in (None, s))


# -- rows land where they belong ------------------------------------------------------------------


async def test_supabase__messages_edits_reactions_failures_and_cursor_land_in_their_tables(
    world: World, supa: Supa
) -> None:
    chat = await _one_chat(world)
    vanishing = await world.sim.send_text(chat, chat.members[1], "event vanishes")
    await world.synapse.execute("DELETE FROM event_json WHERE event_id = $1", vanishing.event_id)
    overrides = supa.settings(**FAST, missing_event_timeout_s=0.3, auto_register_rooms=True)
    async with world.running(**overrides) as svc:
        assert isinstance(svc.sink, supabase_sink.SupabaseSink)
        sent = await world.sim.send_text(chat, chat.members[0], "hello supabase")
        await supa.wait_archived({sent.event_id})
        edit_id = await world.writer.send_event(
            chat.room_id,
            sent.sender.mxid,
            "m.room.message",
            {
                "msgtype": "m.text",
                "body": "* edited",
                "m.new_content": {"msgtype": "m.text", "body": "edited"},
                "m.relates_to": {"rel_type": "m.replace", "event_id": sent.event_id},
            },
        )
        reaction_id = await world.writer.send_event(
            chat.room_id,
            chat.members[1].mxid,
            "m.reaction",
            {"m.relates_to": {"rel_type": "m.annotation", "event_id": sent.event_id, "key": "👍"}},
        )

        async def complete() -> bool:
            row = await supa.archive.fetchrow(
                "SELECT (SELECT edit_count FROM messages WHERE event_id = $1) AS edits,"
                " (SELECT count(*) FROM reactions) AS reactions,"
                " (SELECT count(*) FROM archive_failures WHERE subject = $2) AS failures",
                sent.event_id,
                vanishing.event_id,
            )
            return bool(row["edits"] == 1 and row["reactions"] == 1 and row["failures"] == 1)

        await wait_until(complete, timeout_s=15, what="edit, reaction and failure archived")
        await wait_until(lambda: _cursor_reached(supa, sent.rowid), what="cursor saved")
    message = await supa.archive.fetchrow(
        "SELECT * FROM messages WHERE event_id = $1", sent.event_id
    )
    assert message["body"] == "edited"
    assert message["latest_edit_event_id"] == edit_id
    assert message["whatsapp_chat_id"] == chat.portal_id
    assert message["bridge_rowid"] == sent.rowid
    edit = await supa.archive.fetchrow("SELECT * FROM message_edits")
    assert (edit["edit_event_id"], edit["body"]) == (edit_id, "edited")
    reaction = await supa.archive.fetchrow("SELECT * FROM reactions")
    assert (reaction["reaction_event_id"], reaction["emoji"]) == (reaction_id, "👍")
    failure = await supa.archive.fetchrow("SELECT * FROM archive_failures")
    assert (failure["kind"], failure["resolved_at"]) == ("missing_event", None)
    rooms = await supa.archive.fetch("SELECT room_id FROM monitored_rooms")
    assert chat.room_id in {r["room_id"] for r in rooms}
    assert _count(supa.stub, "POST", "/rest/v1/messages", 201) >= 1


async def _cursor_reached(supa: Supa, rowid: int) -> bool:
    return await supa.cursor() >= rowid


async def test_supabase__replay_neither_duplicates_nor_rewrites_rows(
    world: World, supa: Supa
) -> None:
    chat = await _one_chat(world)
    sent = [await world.sim.send_text(chat, chat.members[0], f"r{i}") for i in range(5)]
    async with world.running(**supa.settings()) as svc:
        await supa.wait_archived({s.event_id for s in sent})
        before = await supa.archive.fetch("SELECT event_id, xmin::text FROM messages ORDER BY 1")
        await svc.processor.process([s.rowid for s in sent], owned=True)
        await svc.processor.archive_events([s.event_id for s in sent])
        after = await supa.archive.fetch("SELECT event_id, xmin::text FROM messages ORDER BY 1")
    assert [tuple(r) for r in before] == [tuple(r) for r in after]
    assert await supa.archive.fetchval("SELECT count(*) FROM messages") == 5


async def test_supabase__cursor_only_moves_forward(world: World, supa: Supa) -> None:
    sink = supabase_sink.SupabaseSink(supa.api())
    await sink.open()
    try:
        for rowid in (5, 9, 3, 9, 12, 11):
            await sink.write(models.ArchiveBatch(cursor=rowid))
        assert await sink.load_state("bridge_cursor") == {"rowid": 12}
        await sink.save_state("heartbeat", {"at": 1.5, "ok": True})
        assert await sink.load_state("heartbeat") == {"at": 1.5, "ok": True}
    finally:
        await sink.close()


async def test_supabase__auto_registration_never_touches_an_operator_row(
    world: World, supa: Supa
) -> None:
    await supa.archive.execute(
        "INSERT INTO monitored_rooms (room_id, enabled, room_name) VALUES ('!ops:x', false, 'op')"
    )
    sink = supabase_sink.SupabaseSink(supa.api())
    await sink.open()
    try:
        new = [models.MonitoredRoom("!ops:x", room_name="bridge"), models.MonitoredRoom("!new:x")]
        await sink.write(models.ArchiveBatch(new_rooms=new))
        rooms = {r.room_id: r for r in await sink.monitored_rooms()}
        assert await sink.known_rooms() == {"!ops:x", "!new:x"}
    finally:
        await sink.close()
    assert (rooms["!ops:x"].enabled, rooms["!ops:x"].room_name) == (False, "op")
    assert rooms["!new:x"].enabled is True


async def test_supabase__big_batches_are_split_by_bytes(world: World, supa: Supa) -> None:
    stub = supa.need_stub()
    stub.max_body_bytes = 40_000  # a gateway's body limit
    chat = await _one_chat(world)
    sent = [
        await world.sim.send_text(chat, chat.members[0], "x" * 500 + str(i)) for i in range(150)
    ]
    async with world.running(**supa.settings(batch_size=150, supabase_max_request_bytes=30_000)):
        await supa.wait_archived({s.event_id for s in sent})
    posts = _count(stub, "POST", "/rest/v1/messages", 201)
    assert posts >= 3
    assert _count(stub, "POST", "/rest/v1/messages", 413) == 0


# -- media ---------------------------------------------------------------------------------------


async def _media_archiver(
    world: World, supa: Supa, api: supabase_api.SupabaseApi
) -> tuple[media.MediaArchiver, supabase_blobstore.SupabaseBlobStore]:
    store = supabase_blobstore.SupabaseBlobStore(
        api, bucket="archive-media", staging_dir=supa.staging
    )
    await store.open()
    archiver = media.MediaArchiver(
        source=media_source.MediaSource(world.synapse),
        sink=media_sink.SupabaseMediaSink(api),
        store=store,
        media_store_path=world.media_store,
        server_name="example.org",
    )
    return archiver, store


def _file_message(event_id: str, mxc: str, size: int, name: str) -> media.MediaMessage:
    content = {
        "msgtype": "m.file",
        "body": name,
        "filename": name,
        "url": mxc,
        "info": {"mimetype": "application/octet-stream", "size": size},
    }
    return media.MediaMessage(event_id, "m.room.message", content, "!room:example.org")


async def test_supabase__media_lands_at_its_content_address_and_20_mb_resumes_over_tus(
    world: World, supa: Supa
) -> None:
    stub = supa.stub
    small, big = os.urandom(300_000), os.urandom(20 * MiB)
    small_mxc = await world.writer.upload_media(small, "application/pdf", "a.pdf", "@u:example.org")
    big_mxc = await world.writer.upload_media(big, "video/mp4", "b.mp4", "@u:example.org")
    api = supa.api()
    await api.open()
    try:
        archiver, store = await _media_archiver(world, supa, api)
        second_patch = Fault(
            method="PATCH",
            path_prefix="/storage/v1/upload/resumable/",
            after=1,
            times=1,
            drop_after_body_bytes=3 * MiB // 2,
        )
        if stub is not None:  # the link dies 1.5 MiB into the second chunk
            stub.faults.add(second_patch)
        messages = [
            _file_message("$small", small_mxc, len(small), "a.pdf"),
            _file_message("$big", big_mxc, len(big), "b.mp4"),
        ]
        tracemalloc.start()
        try:
            outcome = await archiver.process(messages)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert outcome == collections.Counter(stored=2)
        assert peak < 16 * MiB, f"peak traced memory {peak / MiB:.1f} MiB: read whole?"
        for event_id, data in (("$small", small), ("$big", big)):
            row = await supa.archive.fetchrow("SELECT * FROM media WHERE event_id = $1", event_id)
            sha = hashlib.sha256(data).hexdigest()
            assert (row["status"], row["sha256"]) == ("stored", sha)
            assert row["storage_path"] == f"{sha[:2]}/{sha}"
            downloaded = await api.client.storage.from_("archive-media").download(
                row["storage_path"]
            )
            assert downloaded == data
        assert store.uploads == {"standard": 1, "resumable": 1}
        assert await supa.archive.fetchval("SELECT count(*) FROM analysis_jobs") == 2
        if stub is not None:
            assert second_patch.fired == 1
            assert stub.storage.counts["tus_partial_patches"] == 1  # the server kept 1.5 MiB
            assert stub.storage.buckets["archive-media"]["public"] is False
            patches = stub.storage.counts["tus_patches"]
            assert patches == 4  # 6 + (1.5 dropped) 4.5 + 6 + 2 MiB: resumed, not restarted
        # A replay uploads nothing and writes nothing.
        again = await archiver.process(messages)
        assert again == collections.Counter(stored=2)
        assert store.uploads == {"standard": 1, "resumable": 1}
        assert await supa.archive.fetchval("SELECT max(attempts) FROM media") == 2
    finally:
        await api.close()


async def test_supabase__service_archives_media_into_the_bucket(
    world: World, supa: Supa, tmp_path: Path
) -> None:
    chat = await _one_chat(world)
    data = os.urandom(50_000)
    overrides = supa.settings(media_bucket="wa-media", supabase_staging_path=tmp_path / "stage")
    async with world.running(**overrides):
        sent = await world.sim.send_media(
            chat,
            chat.members[0],
            bridge.Media("file", data, "application/pdf", "invoice.pdf"),
        )
        await supa.wait_archived({sent.event_id})

        async def stored() -> bool:
            status = await supa.archive.fetchval(
                "SELECT status FROM media WHERE event_id = $1", sent.event_id
            )
            return bool(status == "stored")

        await wait_until(stored, timeout_s=15, what="media stored")
    sha = hashlib.sha256(data).hexdigest()
    row = await supa.archive.fetchrow("SELECT * FROM media WHERE event_id = $1", sent.event_id)
    assert row["storage_path"] == f"{sha[:2]}/{sha}"
    if supa.stub is not None:
        assert supa.stub.storage.object_path("wa-media", row["storage_path"]).read_bytes() == data
        assert supa.stub.storage.buckets["wa-media"]["public"] is False


async def test_supabase__viewer_and_export_read_media_from_the_private_bucket(
    world: World, supa: Supa, tmp_path: Path
) -> None:
    """The viewer streams a Supabase archive's media from Storage (the bucket stays private),
    and the export copies it, checked against its SHA-256."""
    chat = await _one_chat(world)
    data = bridge.make_png(120, 90, random.Random(5))
    overrides = supa.settings(media_bucket="wa-media", supabase_staging_path=tmp_path / "stage")
    async with world.running(**overrides):
        sent = await world.sim.send_media(
            chat, chat.members[0], bridge.Media("image", data, "image/png", "p.png", "", 120, 90)
        )

        async def stored() -> bool:
            status = await supa.archive.fetchval(
                "SELECT status FROM media WHERE event_id = $1", sent.event_id
            )
            return bool(status == "stored")

        await wait_until(stored, timeout_s=15, what="media stored")
    media_id = await supa.archive.fetchval(
        "SELECT id FROM media WHERE event_id = $1", sent.event_id
    )
    token = "supabase-viewer-token-000000"
    async with httpx.AsyncClient() as storage_client:
        files = media_files.SupabaseMediaFiles(
            storage_client, base_url=supa.url, key=supa.key, bucket="wa-media"
        )
        app = viewer_app.build(
            viewer_reader.ArchiveReader(supa.archive), files, token=token, zone=UTC
        )
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://viewer",
            headers={"Authorization": f"Bearer {token}"},
        ) as client:
            response = await client.get(f"/media/{media_id}")
            assert response.status_code == 200
            assert response.content == data
            assert response.headers["content-type"] == "image/png"
            assert supa.key not in str(response.headers)
            page = await client.get("/chat", params={"room": chat.room_id})
            assert f'src="/media/{media_id}"' in page.text
    out = tmp_path / "export"
    summary = await export_main.export(
        archive_url=world.archive_url,
        options=export_run.Options(out=out, rooms=(chat.room_id,)),
        media_root=None,
        storage=viewer_serve.SupabaseStorage(supa.url, supa.key, "wa-media"),
    )
    assert summary.media_failed == 0
    sha = hashlib.sha256(data).hexdigest()
    assert (out / "media" / f"{sha}.png").read_bytes() == data


# -- outages -------------------------------------------------------------------------------------


OUTAGE_PHASE_S = 30.0
OUTAGE_PHASE_MESSAGES = 60


# While the stub refuses connections, a client connection broken mid-request is sometimes
# dropped unclosed by httpx/anyio (a ResourceWarning seen once in five runs). Not a loss and
# not our code path's data: the assertions below are what this test is about. The test collects
# that garbage itself before it ends, under this filter: left to the garbage collector's own
# timing, the warning surfaced in whichever later test happened to trigger a collection.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
async def test_supabase__outage_of_503s_then_a_dead_port_loses_nothing(
    world: World, supa: Supa
) -> None:
    """A 60-second outage: 30 s of 503s from the gateway, then 30 s of refused connections,
    with messages flowing all along; the pipeline holds its place and catches up by itself."""
    stub = supa.need_stub()
    chat = await _one_chat(world)
    overrides = supa.settings(supabase_retry_budget_s=0.3, reconnect_max_backoff_s=2.0)
    async with world.running(**overrides) as svc:
        first = await world.sim.send_text(chat, chat.members[0], "before")
        await supa.wait_archived({first.event_id})
        await wait_until(lambda: _cursor_reached(supa, first.rowid), what="first cursor")
        cursor_before = await supa.cursor()
        outage = stub.faults.unavailable(path_prefix="/rest/v1/")
        during = []
        for i in range(OUTAGE_PHASE_MESSAGES):
            during.append(await world.sim.send_text(chat, chat.members[i % 3], f"during {i}"))
            await asyncio.sleep(OUTAGE_PHASE_S / OUTAGE_PHASE_MESSAGES)
        await stub.refuse()
        errors_before_refusal = _sink_errors(svc)
        for i in range(OUTAGE_PHASE_MESSAGES):
            during.append(await world.sim.send_text(chat, chat.members[i % 3], f"dead {i}"))
            await asyncio.sleep(OUTAGE_PHASE_S / OUTAGE_PHASE_MESSAGES)
        held = await supa.cursor()
        assert held == cursor_before, f"cursor moved during the outage: {cursor_before} -> {held}"
        assert outage.fired > 0, "no request met the 503s"
        assert _sink_errors(svc) > errors_before_refusal, "the pipeline never met the dead port"
        stub.faults.clear()
        await stub.accept()
        after = await world.sim.send_text(chat, chat.members[0], "after")
        everything = {s.event_id for s in [*during, after]}
        await supa.wait_archived(everything, timeout_s=30)
        await wait_until(lambda: _cursor_reached(supa, after.rowid), what="cursor caught up")
    archived = await supa.archive.fetchval("SELECT count(*) FROM messages")
    expected = 2 * OUTAGE_PHASE_MESSAGES + 2
    gc.collect()  # here, under this test's filter, not in a later test (see the comment above)
    assert archived == expected, f"{archived} archived, expected {expected} (no loss, no dups)"


def _sink_errors(svc: service.Service) -> float:
    return svc.metrics.sink_errors.labels("SinkUnavailable")._value.get()


async def test_supabase__retry_after_of_a_429_is_honoured(world: World, supa: Supa) -> None:
    stub = supa.need_stub()
    sink = supabase_sink.SupabaseSink(supa.api(retry_budget_s=5.0))
    await sink.open()
    try:
        throttle = stub.faults.throttled(retry_after_s=2, path_prefix="/rest/v1/archiver_state")
        started = time.monotonic()
        await sink.write(models.ArchiveBatch(cursor=7))
        waited = time.monotonic() - started
    finally:
        await sink.close()
    assert throttle.fired == 1
    # At least the Retry-After; the upper bound only guards against waiting without end
    # (a loaded CI machine may add seconds of scheduling delay).
    assert 2.0 <= waited < 10.0
    assert await supa.cursor() == 7


async def test_supabase__retry_after_beyond_the_budget_holds_every_later_request(
    world: World, supa: Supa
) -> None:
    stub = supa.need_stub()
    sink = supabase_sink.SupabaseSink(supa.api(retry_budget_s=0.5))
    await sink.open()
    try:
        stub.faults.throttled(retry_after_s=2, path_prefix="/rest/v1/archiver_state")
        started = time.monotonic()
        with pytest.raises(errors.SinkUnavailable, match="429"):
            await sink.write(models.ArchiveBatch(cursor=7))
        await sink.write(models.ArchiveBatch(cursor=7))  # the pipeline's retry: waits the gate
        waited = time.monotonic() - started
    finally:
        await sink.close()
    assert waited >= 2.0


async def test_supabase__a_slow_answer_times_out_and_is_retried(world: World, supa: Supa) -> None:
    stub = supa.need_stub()
    sink = supabase_sink.SupabaseSink(supa.api(timeout_s=0.3, retry_budget_s=5.0))
    await sink.open()
    try:
        slow = stub.faults.add(Fault(path_prefix="/rest/v1/archiver_state", times=1, delay_s=1.0))
        await sink.write(models.ArchiveBatch(cursor=3))
    finally:
        await sink.close()
    assert slow.fired == 1
    assert await supa.cursor() == 3


async def test_supabase__rejected_row_is_recorded_and_the_rest_proceed(
    world: World, supa: Supa
) -> None:
    await supa.archive.execute(
        "ALTER TABLE messages ADD CONSTRAINT test_no_poison CHECK (body IS DISTINCT FROM 'poison')"
    )
    chat = await _one_chat(world)
    try:
        sent = [await world.sim.send_text(chat, chat.members[0], f"fine {i}") for i in range(6)]
        poison = await world.sim.send_text(chat, chat.members[1], "poison")
        sent += [await world.sim.send_text(chat, chat.members[0], f"later {i}") for i in range(6)]
        async with world.running(**supa.settings(batch_size=20)):
            await supa.wait_archived({s.event_id for s in sent})

            async def recorded() -> bool:
                n = await supa.archive.fetchval(
                    "SELECT count(*) FROM archive_failures WHERE subject = $1", poison.event_id
                )
                return bool(n)

            await wait_until(recorded, what="sink_rejected failure")
            await wait_until(lambda: _cursor_reached(supa, sent[-1].rowid), what="cursor passed")
        failure = await supa.archive.fetchrow(
            "SELECT * FROM archive_failures WHERE subject = $1", poison.event_id
        )
    finally:
        await supa.archive.execute("ALTER TABLE messages DROP CONSTRAINT test_no_poison")
    assert failure["kind"] == "sink_rejected"
    assert "23514" in failure["reason"]
    assert "test_no_poison" in failure["reason"]
    assert poison.event_id not in {
        r["event_id"] for r in await supa.archive.fetch("SELECT event_id FROM messages")
    }


# -- start-up --------------------------------------------------------------------------------------


async def test_supabase__wrong_key_fails_at_start_with_a_clear_message_and_no_key(
    world: World, supa: Supa
) -> None:
    secret = "sk-wrong-" + os.urandom(8).hex()
    svc = service.Service(world.settings(**supa.settings(supabase_key=secret)))
    with pytest.raises(errors.ConfigError) as caught:
        await svc.open()
    await svc.close()
    message = str(caught.value)
    assert "SUPABASE_KEY" in message
    assert "401" in message
    assert secret not in message
    # The real CLI: exit code 2, one line, no key.
    env = {
        **os.environ,
        "WHATSAPP_DB_URL": world.bridge_url,
        "SYNAPSE_DB_URL": world.synapse_url,
        "SUPABASE_URL": supa.url,
        "SUPABASE_KEY": secret,
        "METRICS_ADDR": "127.0.0.1:0",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "listener", "run",
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 2, err.decode()
    assert "SUPABASE_KEY" in err.decode()
    assert secret not in (out + err).decode()


async def test_supabase__unmigrated_archive_fails_at_start(world: World, supa: Supa) -> None:
    stub = supa.need_stub()
    name = pg.unique_name("t_supa_empty")
    url = await pg.create_database(name)
    empty = SupabaseStub(url, stub.storage.root.parent / "empty")
    await empty.start()
    try:
        sink = supabase_sink.SupabaseSink(supabase_api.SupabaseApi(empty.url, empty.key))
        with pytest.raises(errors.SchemaError, match="archiver-db migrate"):
            await sink.open()
    finally:
        await empty.stop()
        await pg.drop_database(name)


# -- the stub answers like the real APIs ---------------------------------------------------------


async def test_stub__answers_errors_as_postgrest_and_the_gateway_do(
    world: World, supa: Supa
) -> None:
    headers = {"apikey": supa.key, "Authorization": f"Bearer {supa.key}"}
    async with httpx.AsyncClient(base_url=f"{supa.url}/rest/v1") as http:
        mixed = await http.post(
            "/monitored_rooms", headers=headers, json=[{"room_id": "!a"}, {"enabled": False}]
        )
        unknown = await http.get("/nope", headers=headers)
        no_key = await http.get("/messages")
        bad_key = await http.get("/messages", headers={**headers, "apikey": "x"})
        bad_jwt = await http.get("/messages", headers={**headers, "Authorization": "Bearer x"})
        bad_input = await http.get("/media", headers=headers, params={"id": "eq.abc"})
        await http.post("/monitored_rooms", headers=headers, json={"room_id": "!dup"})
        duplicate = await http.post("/monitored_rooms", headers=headers, json={"room_id": "!dup"})
    assert (mixed.status_code, mixed.json()["code"]) == (400, "PGRST102")
    assert mixed.json()["message"] == "All object keys must match"
    assert (unknown.status_code, unknown.json()["code"]) == (404, "PGRST205")
    assert (no_key.status_code, no_key.json()["message"]) == (401, "No API key found in request")
    assert (bad_key.status_code, bad_key.json()["message"]) == (401, "Invalid API key")
    assert (bad_jwt.status_code, bad_jwt.json()["code"]) == (401, "PGRST301")
    assert (bad_input.status_code, bad_input.json()["code"]) == (400, "22P02")
    assert (duplicate.status_code, duplicate.json()["code"]) == (409, "23505")


async def test_supabase__encrypted_message_waits_then_decrypts_through_postgrest(
    world: World, supa: Supa
) -> None:
    """Ciphertext and decryption status go through PostgREST like the other columns, and the
    late-key pass finds the waiting rows through it (sink.undecrypted)."""
    chat = await _one_chat(world)
    world.sim.encrypted_rooms.add(chat.room_id)
    key = "supabase-e2ee-pickle-key"
    settings = supa.settings(**FAST, bridge_pickle_key=key)
    async with world.running(**settings) as svc:
        sent = await world.sim.send_text(chat, chat.members[0], "sealed")
        await supa.wait_archived({sent.event_id})
        assert await svc.sink.undecrypted("", 10) == [
            (sent.event_id, chat.room_id, world.sim.encryptor.session(chat.room_id).session_id)
        ]
        await megolm.store_session(
            world.bridge, world.sim.encryptor.session(chat.room_id), key.encode()
        )

        async def decrypted() -> bool:
            row = await supa.archive.fetchrow(
                "SELECT body, decryption FROM messages WHERE event_id = $1", sent.event_id
            )
            return row is not None and tuple(row) == ("sealed", "decrypted")

        await wait_until(decrypted, timeout_s=15, what="decrypted through PostgREST")
        assert await svc.sink.undecrypted("", 10) == []
    encrypted = await supa.archive.fetchval(
        "SELECT encrypted_content->>'algorithm' FROM messages WHERE event_id = $1", sent.event_id
    )
    assert encrypted == megolm.ALGORITHM
