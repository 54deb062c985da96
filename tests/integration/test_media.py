"""MediaArchiver against real PostgreSQL: a Synapse-schema DB with files laid out exactly as
Synapse lays them out (SqlSynapseWriter), the archive schema, and a local blob store."""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import hashlib
import json
import os
import random
import tracemalloc
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from listener.core import models
from listener.media import archiver as media
from listener.media import blobstore, http_fallback, refs
from listener.media import source as media_source
from listener.sim import bridge, synapse_writer
from listener.sinks import postgres_media
from tests import pg
from tests.conftest import wait_until

SERVER = "example.org"


class CountingStore:
    """The real LocalBlobStore, counting ingests (to prove a replay copies nothing)."""

    def __init__(self, inner: blobstore.LocalBlobStore) -> None:
        self.inner = inner
        self.ingests = 0

    async def exists(self, key: str) -> bool:
        return await self.inner.exists(key)

    async def ingest(self, source: blobstore.Source, **kwargs: Any) -> blobstore.StoredBlob:
        self.ingests += 1
        return await self.inner.ingest(source, **kwargs)


@dataclass
class Env:
    synapse: asyncpg.Pool
    archive: asyncpg.Pool
    media_store: Path
    archive_root: Path
    writer: synapse_writer.SqlSynapseWriter
    store: CountingStore
    rng: random.Random

    def archiver(self, **overrides: Any) -> media.MediaArchiver:
        kwargs: dict[str, Any] = {
            "source": media_source.MediaSource(self.synapse),
            "sink": postgres_media.PgMediaSink(self.archive),
            "store": self.store,
            "media_store_path": self.media_store,
            "server_name": SERVER,
            "upload_poll_s": 0.05,
        }
        kwargs.update(overrides)
        return media.MediaArchiver(**kwargs)

    async def upload(self, data: bytes, mimetype: str, filename: str | None = None) -> str:
        return await self.writer.upload_media(data, mimetype, filename, "@whatsapp_1:example.org")

    async def rows(self) -> dict[str, asyncpg.Record]:
        records = await self.archive.fetch("SELECT * FROM media ORDER BY id")
        return {f"{r['event_id']} {r['mxc_url']}": r for r in records}

    async def row(self, event_id: str, mxc: str) -> asyncpg.Record:
        record = await self.archive.fetchrow(
            "SELECT * FROM media WHERE event_id = $1 AND mxc_url = $2", event_id, mxc
        )
        assert record is not None, f"no media row for {event_id} {mxc}"
        return record

    async def jobs(self) -> list[asyncpg.Record]:
        return list(await self.archive.fetch("SELECT * FROM analysis_jobs ORDER BY id"))

    def blobs(self) -> list[Path]:
        return sorted(
            p
            for p in self.archive_root.rglob("*")
            if p.is_file() and blobstore.INCOMING_DIR not in p.parts
        )

    def incoming(self) -> list[Path]:
        incoming = self.archive_root / blobstore.INCOMING_DIR
        return list(incoming.iterdir()) if incoming.exists() else []


@pytest.fixture
async def env(synapse_template: str, archive_template: str, tmp_path: Path) -> AsyncIterator[Env]:
    suffix = uuid.uuid4().hex[:8]
    names = [f"t_media_syn_{suffix}", f"t_media_arc_{suffix}"]
    urls = [
        await pg.create_database(names[0], template=synapse_template),
        await pg.create_database(names[1], template=archive_template),
    ]
    pools = [await asyncpg.create_pool(url, min_size=1, max_size=4) for url in urls]
    media_store, archive_root = tmp_path / "media_store", tmp_path / "archive"
    media_store.mkdir()
    rng = random.Random(99)
    writer = synapse_writer.SqlSynapseWriter(
        pools[0], server_name=SERVER, media_store_path=media_store, rng=rng, thumbnails=False
    )
    store = CountingStore(blobstore.LocalBlobStore(archive_root))
    try:
        yield Env(pools[0], pools[1], media_store, archive_root, writer, store, rng)
    finally:
        for pool in pools:
            await pool.close()
        for name in names:
            await pg.drop_database(name)


def message(
    content: dict[str, Any], *, event_type: str = "m.room.message", **kw: Any
) -> media.MediaMessage:
    event_id = kw.pop("event_id", "$" + uuid.uuid4().hex)
    return media.MediaMessage(event_id, event_type, content, kw.pop("room_id", "!room"), **kw)


def image(mxc: str, **extra: Any) -> dict[str, Any]:
    info = {"mimetype": "image/png", "size": 10, "w": 64, "h": 48}
    return {
        "msgtype": "m.image",
        "body": "",
        "filename": "IMG.png",
        "url": mxc,
        "info": info,
    } | extra


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def media_id(mxc: str) -> str:
    return refs.parse_mxc(mxc)[1]


# -- every kind, metadata, content addressing ---------------------------------------------------


async def test_media__archives_every_kind_with_metadata_and_one_job_each(env: Env) -> None:
    png = bridge.make_png(64, 48, env.rng)
    voice, clip, pdf, sticker = (os.urandom(n) for n in (900, 2000, 1500, 300))
    thumb = bridge.make_png(32, 24, env.rng)
    mxcs = {
        "image": await env.upload(png, "image/png", "IMG.png"),
        "voice": await env.upload(voice, "audio/ogg", "voice.ogg"),
        "video": await env.upload(clip, "video/mp4", "clip.mp4"),
        "thumb": await env.upload(thumb, "image/png"),
        "file": await env.upload(pdf, "application/pdf", "invoice.pdf"),
        "sticker": await env.upload(sticker, "image/webp", "sticker.webp"),
    }
    video_info = {
        "mimetype": "video/mp4", "size": 2000, "w": 320, "h": 240, "duration": 4000,
        "thumbnail_url": mxcs["thumb"],
        "thumbnail_info": {"mimetype": "image/png", "size": len(thumb), "w": 32, "h": 24},
    }  # fmt: skip
    messages = [
        message(image(mxcs["image"]), event_id="$image"),
        message(
            {
                "msgtype": "m.audio",
                "body": "",
                "filename": "voice.ogg",
                "url": mxcs["voice"],
                "info": {"mimetype": "audio/ogg", "size": 900},
                "org.matrix.msc3245.voice": {},
                "org.matrix.msc1767.audio": {"duration": 7000, "waveform": []},
            },
            event_id="$voice",
        ),
        message(
            {
                "msgtype": "m.video",
                "body": "look",
                "filename": "clip.mp4",
                "url": mxcs["video"],
                "info": video_info,
            },
            event_id="$video",
        ),
        message(
            {
                "msgtype": "m.file",
                "body": "",
                "filename": "invoice.pdf",
                "url": mxcs["file"],
                "info": {"mimetype": "application/pdf", "size": 1500},
            },
            event_id="$file",
        ),
        message(
            {"body": "sticker", "url": mxcs["sticker"], "info": {"mimetype": "image/webp"}},
            event_type="m.sticker",
            event_id="$sticker",
        ),
    ]
    outcome = await env.archiver().process(messages)
    assert outcome == collections.Counter(stored=6)

    expected = {
        ("$image", "image"): png, ("$voice", "voice"): voice, ("$video", "video"): clip,
        ("$video", "thumb"): thumb, ("$file", "file"): pdf, ("$sticker", "sticker"): sticker,
    }  # fmt: skip
    for (event_id, name), data in expected.items():
        row = await env.row(event_id, mxcs[name])
        assert row["status"] == "stored"
        assert row["sha256"] == sha(data)
        assert row["size_bytes"] == len(data)
        stored = env.archive_root / row["storage_path"]
        assert row["storage_path"] == f"{sha(data)[:2]}/{sha(data)}"
        assert stored.read_bytes() == data
        assert row["uploaded_at"] is not None
    kinds = {(r["event_id"], r["kind"]) for r in (await env.rows()).values()}
    assert kinds == {
        ("$image", "image"), ("$voice", "audio"), ("$video", "video"),
        ("$video", "thumbnail"), ("$file", "file"), ("$sticker", "sticker"),
    }  # fmt: skip
    video = await env.row("$video", mxcs["video"])
    assert (video["width"], video["height"], video["duration_ms"]) == (320, 240, 4000)
    assert (video["original_filename"], video["mimetype"]) == ("clip.mp4", "video/mp4")
    assert (await env.row("$voice", mxcs["voice"]))["duration_ms"] == 7000
    thumb_row = await env.row("$video", mxcs["thumb"])
    assert (thumb_row["width"], thumb_row["original_filename"]) == (32, None)
    assert len(await env.jobs()) == 6
    assert {j["status"] for j in await env.jobs()} == {"pending"}
    assert env.incoming() == []


async def test_media__same_bytes_in_two_messages_are_stored_once_and_analysed_once(
    env: Env,
) -> None:
    data = bridge.make_png(40, 40, env.rng)
    first = await env.upload(data, "image/png", "a.png")
    second = await env.upload(data, "image/png", "b.png")  # the bridge reuploads per message
    messages = [
        message(image(first), event_id="$a"),
        message(image(second), event_id="$b"),
        message(image(first), event_id="$forwarded"),  # same mxc in another event
    ]
    assert await env.archiver().process(messages) == collections.Counter(stored=3)
    rows = await env.rows()
    assert len(rows) == 3
    assert {r["sha256"] for r in rows.values()} == {sha(data)}
    assert len(env.blobs()) == 1
    assert len(await env.jobs()) == 1


async def test_media__replay_copies_nothing_and_creates_no_new_rows_or_jobs(env: Env) -> None:
    mxc = await env.upload(os.urandom(5000), "application/pdf", "x.pdf")
    msg = message({"msgtype": "m.file", "body": "x.pdf", "url": mxc}, event_id="$x")
    archiver = env.archiver()
    assert await archiver.process([msg]) == collections.Counter(stored=1)
    before = await env.row("$x", mxc)
    for _ in range(3):
        assert await archiver.process([msg]) == collections.Counter(stored=1)
    after = await env.row("$x", mxc)
    assert env.store.ingests == 1
    assert (after["attempts"], after["updated_at"]) == (before["attempts"], before["updated_at"])
    assert len(await env.jobs()) == 1


async def test_media__zero_byte_file_is_stored(env: Env) -> None:
    mxc = await env.upload(b"", "text/plain", "empty.txt")
    await env.archiver().process([message({"msgtype": "m.file", "url": mxc}, event_id="$e")])
    row = await env.row("$e", mxc)
    assert (row["status"], row["size_bytes"], row["sha256"]) == ("stored", 0, sha(b""))
    assert (env.archive_root / row["storage_path"]).stat().st_size == 0


# -- remote media ---------------------------------------------------------------------------------


async def add_remote(env: Env, origin: str, mid: str, data: bytes, fsid: str | None = None) -> str:
    fsid = fsid or "".join(env.rng.choices("abcdefghijklmnopqrstuvwxyz", k=24))
    path = env.media_store / "remote_content" / origin / fsid[:2] / fsid[2:4] / fsid[4:]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    await env.synapse.execute(
        "INSERT INTO remote_media_cache (media_origin, media_id, media_type, created_ts,"
        " upload_name, media_length, filesystem_id, sha256) VALUES ($1,$2,$3,$4,$5,$6,$7,$8)",
        origin, mid, "image/jpeg", 1_700_000_000_000, "remote.jpg", len(data), fsid, sha(data),
    )  # fmt: skip
    return f"mxc://{origin}/{mid}"


@pytest.mark.parametrize("server_name", [SERVER, None])
async def test_media__remote_media_comes_from_remote_content_by_filesystem_id(
    env: Env, server_name: str | None
) -> None:
    data = os.urandom(3000)
    remote = await add_remote(env, "wa.example.net", "AbCdEfGhIjKlMnOpQrStUvWx", data)
    local_data = os.urandom(100)
    local = await env.upload(local_data, "image/png", "l.png")
    archiver = env.archiver(server_name=server_name)
    await archiver.process(
        [message(image(remote), event_id="$r"), message(image(local), event_id="$l")]
    )
    row = await env.row("$r", remote)
    assert (row["status"], row["sha256"], row["original_filename"]) == (
        "stored",
        sha(data),
        "IMG.png",
    )
    assert (await env.row("$l", local))["sha256"] == sha(local_data)


async def test_media__remote_filesystem_id_that_escapes_is_rejected(env: Env) -> None:
    await env.synapse.execute(
        "INSERT INTO remote_media_cache (media_origin, media_id, media_length, filesystem_id)"
        " VALUES ('evil.org', 'abcdefgh', 10, '../../../../etc/passwd')"
    )
    await env.archiver().process([message(image("mxc://evil.org/abcdefgh"), event_id="$ev")])
    row = await env.row("$ev", "mxc://evil.org/abcdefgh")
    assert row["status"] == "rejected"
    assert "unsafe" in row["status_reason"]


# -- rejected, missing, quarantined, skipped ------------------------------------------------


TRAVERSALS = [
    "mxc://../local_content",
    "mxc://example.org/../../../etc/passwd",
    "mxc://example.org/..%2F..%2Fetc%2Fpasswd",
    "mxc://example.org/abc\x00def",
    "mxc://example.org//etc/passwd",
    "mxc:///etc/passwd",
    "mxc://example.org/a/b/c",
    "file:///etc/passwd",
]


async def test_media__traversal_attempts_are_recorded_rejected_and_never_opened(env: Env) -> None:
    messages = [message(image(uri), event_id=f"$t{n}") for n, uri in enumerate(TRAVERSALS)]
    outcome = await env.archiver().process(messages)
    assert outcome == collections.Counter(rejected=len(TRAVERSALS))
    rows = await env.rows()
    assert {r["status"] for r in rows.values()} == {"rejected"}
    assert all(r["status_reason"] for r in rows.values())
    assert env.store.ingests == 0
    assert await env.jobs() == []


async def test_media__missing_file_is_marked_then_stored_by_retry(env: Env) -> None:
    data = os.urandom(2048)
    mxc = await env.upload(data, "image/png", "gone.png")
    path = env.media_store / refs.local_content_path(media_id(mxc))
    path.unlink()
    room = await env.writer.create_room("@alice:example.org", name="r")
    event_id = await env.writer.send_event(room, "@alice:example.org", "m.room.message", image(mxc))
    archiver = env.archiver()
    assert await archiver.process([message(image(mxc), event_id=event_id)]) == collections.Counter(
        missing=1
    )
    row = await env.row(event_id, mxc)
    assert "not in the media store" in row["status_reason"]
    assert await archiver.retry_media() == collections.Counter(missing=1)
    path.write_bytes(data)
    assert await archiver.retry_media() == collections.Counter(stored=1)
    row = await env.row(event_id, mxc)
    assert (row["status"], row["sha256"], row["status_reason"]) == ("stored", sha(data), None)
    assert row["attempts"] >= 3
    assert len(await env.jobs()) == 1


async def test_media__retry_finds_media_delivered_by_an_edit(env: Env) -> None:
    """The bridge sends late media as an m.replace edit; the row keeps the original event ID."""
    data = os.urandom(4096)
    mxc = await env.upload(data, "image/png", "late.png")
    path = env.media_store / refs.local_content_path(media_id(mxc))
    path.unlink()
    room = await env.writer.create_room("@alice:example.org", name="r")
    original = await env.writer.send_event(
        room, "@alice:example.org", "m.room.message", {"msgtype": "m.text", "body": "media..."}
    )
    edit = {
        "msgtype": "m.image", "body": "* IMG.png", "url": mxc,
        "m.new_content": image(mxc),
        "m.relates_to": {"rel_type": "m.replace", "event_id": original},
    }  # fmt: skip
    await env.writer.send_event(room, "@alice:example.org", "m.room.message", edit)
    archiver = env.archiver()
    await archiver.process([message(image(mxc), event_id=original)])  # content as archived
    assert (await env.row(original, mxc))["status"] == "missing"
    path.write_bytes(data)
    assert await archiver.retry_media() == collections.Counter(stored=1)


async def test_media__retry_of_media_no_event_references_any_more_fails_it(env: Env) -> None:
    mxc = "mxc://example.org/NoSuchMediaIdAnywhereXYZ"
    await env.archiver().process([message(image(mxc), event_id="$gone")])
    assert await env.archiver().retry_media() == collections.Counter(failed=1)
    assert "no longer references" in (await env.row("$gone", mxc))["status_reason"]


async def test_media__no_synapse_row_is_missing(env: Env) -> None:
    mxc = "mxc://example.org/NoSuchMediaIdAnywhereXYZ"
    await env.archiver().process([message(image(mxc), event_id="$n")])
    row = await env.row("$n", mxc)
    assert (row["status"], row["status_reason"]) == (
        "missing",
        f"no local_media_repository row for {mxc}",
    )


async def test_media__quarantined_media_is_recorded_not_copied_unless_configured(
    env: Env,
) -> None:
    data = os.urandom(700)
    mxc = await env.upload(data, "image/png", "q.png")
    await env.synapse.execute(
        "UPDATE local_media_repository SET quarantined_by = '@admin:example.org'"
    )
    await env.archiver().process([message(image(mxc), event_id="$q")])
    assert (await env.row("$q", mxc))["status"] == "quarantined"
    assert env.blobs() == []
    assert await env.jobs() == []
    await env.archiver(archive_quarantined=True).process([message(image(mxc), event_id="$q")])
    row = await env.row("$q", mxc)
    assert (row["status"], row["sha256"]) == ("stored", sha(data))
    assert "quarantined" in row["status_reason"]


async def test_media__download_off_and_room_media_off_are_skipped(env: Env) -> None:
    mxc = await env.upload(os.urandom(100), "image/png", "s.png")
    await env.archiver(download_media=False).process([message(image(mxc), event_id="$d")])
    await env.archiver().process([message(image(mxc), event_id="$room", archive_media=False)])
    assert (await env.row("$d", mxc))["status_reason"] == "DOWNLOAD_MEDIA is false"
    assert (await env.row("$room", mxc))["status"] == "skipped"
    assert env.store.ingests == 0


# -- encrypted attachments ------------------------------------------------------------------


def _b64(raw: bytes, *, urlsafe: bool = False) -> str:
    encode = base64.urlsafe_b64encode if urlsafe else base64.b64encode
    return encode(raw).decode().rstrip("=")


def encrypt(plaintext: bytes) -> tuple[bytes, dict[str, Any]]:
    key, iv = os.urandom(32), os.urandom(8) + b"\0" * 8
    encryptor = Cipher(algorithms.AES(key), modes.CTR(iv)).encryptor()
    ciphertext = encryptor.update(plaintext) + encryptor.finalize()
    jwk = {"kty": "oct", "alg": "A256CTR", "ext": True, "key_ops": ["encrypt", "decrypt"],
           "k": _b64(key, urlsafe=True)}  # fmt: skip
    return ciphertext, {
        "v": "v2", "key": jwk, "iv": _b64(iv),
        "hashes": {"sha256": _b64(hashlib.sha256(ciphertext).digest())},
    }  # fmt: skip


async def encrypted_message(
    env: Env, plaintext: bytes, event_id: str
) -> tuple[str, media.MediaMessage]:
    ciphertext, file = encrypt(plaintext)
    # As the bridge does in encrypted rooms: octet-stream, no file name.
    mxc = await env.upload(ciphertext, "application/octet-stream")
    content = {"msgtype": "m.image", "body": "", "file": file | {"url": mxc},
               "info": {"mimetype": "image/jpeg", "size": len(plaintext)}}  # fmt: skip
    return mxc, message(content, event_id=event_id)


async def test_media__encrypted_attachment_is_decrypted_and_stored_as_plaintext(env: Env) -> None:
    plaintext = os.urandom(300_000)
    mxc, msg = await encrypted_message(env, plaintext, "$enc")
    assert await env.archiver().process([msg]) == collections.Counter(stored=1)
    row = await env.row("$enc", mxc)
    assert (row["status"], row["encrypted"], row["mimetype"]) == ("stored", True, "image/jpeg")
    assert row["sha256"] == sha(plaintext)
    assert row["source_sha256"] != row["sha256"]
    assert (env.archive_root / row["storage_path"]).read_bytes() == plaintext


@pytest.mark.parametrize("synapse_hash", [True, False])
async def test_media__tampered_encrypted_attachment_fails_and_stores_nothing(
    env: Env, synapse_hash: bool
) -> None:
    mxc, msg = await encrypted_message(env, os.urandom(4096), "$tampered")
    path = env.media_store / refs.local_content_path(media_id(mxc))
    raw = bytearray(path.read_bytes())
    raw[100] ^= 0xFF
    path.write_bytes(bytes(raw))
    if not synapse_hash:  # a Synapse older than 1.128 has no sha256: the event's hash catches it
        await env.synapse.execute("UPDATE local_media_repository SET sha256 = NULL")
    assert await env.archiver().process([msg]) == collections.Counter(failed=1)
    row = await env.row("$tampered", mxc)
    assert row["status"] == "failed"
    expected = (
        "does not match the recorded" if synapse_hash else "encrypted attachment hash mismatch"
    )
    assert expected in row["status_reason"]
    assert env.blobs() == []
    assert env.incoming() == []
    assert await env.jobs() == []


async def test_media__invalid_encrypted_file_is_rejected_with_reason(env: Env) -> None:
    mxc, msg = await encrypted_message(env, b"abc", "$badkey")
    msg.content["file"]["iv"] = _b64(b"short")
    await env.archiver().process([msg])
    row = await env.row("$badkey", mxc)
    assert row["status"] == "rejected"
    assert "iv is 5 bytes, expected 16" in row["status_reason"]


# -- async uploads and the run loop -----------------------------------------------------------


async def pending_upload(env: Env, mid: str) -> None:
    await env.synapse.execute(
        "INSERT INTO local_media_repository (media_id, media_type, media_length, created_ts,"
        " upload_name, user_id) VALUES ($1, 'image/png', NULL, 1700000000000, 'late.png', '@b:x')",
        mid,
    )


@contextlib.asynccontextmanager
async def running(archiver: media.MediaArchiver) -> AsyncIterator[None]:
    task = asyncio.create_task(archiver.run(), name="media-under-test")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def status_is(env: Env, event_id: str, mxc: str, status: str) -> None:
    async def check() -> bool:
        value = await env.archive.fetchval(
            "SELECT status FROM media WHERE event_id = $1 AND mxc_url = $2", event_id, mxc
        )
        return bool(value == status)

    await wait_until(check, timeout_s=10, what=f"{mxc} {status}")


async def test_media__async_upload_pending_then_completed_is_stored(env: Env) -> None:
    mid = "LateUploadAbcdefghijklmn"
    mxc = f"mxc://{SERVER}/{mid}"
    await pending_upload(env, mid)
    archiver = env.archiver(upload_wait_s=30.0)
    async with running(archiver):
        archiver.offer([message(image(mxc), event_id="$late")])
        await status_is(env, "$late", mxc, "pending")
        data = os.urandom(1234)
        path = env.media_store / refs.local_content_path(mid)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        await env.synapse.execute(
            "UPDATE local_media_repository SET media_length = $1 WHERE media_id = $2",
            len(data),
            mid,
        )
        await status_is(env, "$late", mxc, "stored")
    assert (await env.row("$late", mxc))["sha256"] == sha(data)


async def test_media__async_upload_that_never_finishes_is_missing_in_time(env: Env) -> None:
    mid = "NeverUploadedAbcdefghijk"
    mxc = f"mxc://{SERVER}/{mid}"
    await pending_upload(env, mid)
    archiver = env.archiver(upload_wait_s=0.3)
    async with running(archiver):
        archiver.offer([message(image(mxc), event_id="$never")])
        await status_is(env, "$never", mxc, "missing")
    assert "async upload not finished" in (await env.row("$never", mxc))["status_reason"]


async def test_media__offer_archived_fits_the_pipeline_hook(env: Env) -> None:
    data = os.urandom(999)
    mxc = await env.upload(data, "image/png", "p.png")
    archived = models.ArchivedMessage(
        event_id="$p", room_id="!r", room_name=None, sender="@a:x", sender_display_name=None,
        timestamp=__import__("datetime").datetime.now(__import__("datetime").UTC),
        message_type="m.image", content_json=json.dumps(image(mxc)), content_raw=None, body="",
        whatsapp_message_id="m", whatsapp_chat_id="c@g.us", whatsapp_sender_id="s", part_id="",
        bridge_id="", bridge_rowid=1, room_type="", reply_to_event_id=None,
        thread_root_event_id=None, has_matrix_event=True,
    )  # fmt: skip
    archiver = env.archiver(media_allowed=lambda room_id, chat_id: chat_id == "c@g.us")
    async with running(archiver):
        assert archiver.offer_archived([archived], 0.0) == 1
        await asyncio.wait_for(archiver.drain(), 10)
    assert (await env.row("$p", mxc))["status"] == "stored"


# -- HTTP fallback ------------------------------------------------------------------------------


async def test_media__http_fallback_fetches_absent_files_with_the_token(env: Env) -> None:
    data = os.urandom(5000)
    mxc = await env.upload(data, "image/png", "s3.png")
    (env.media_store / refs.local_content_path(media_id(mxc))).unlink()
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path.endswith(media_id(mxc)):
            return httpx.Response(200, content=data)
        return httpx.Response(404, json={"errcode": "M_NOT_FOUND"})

    client = httpx.AsyncClient(base_url="http://hs.test", transport=httpx.MockTransport(handler))
    fetcher = http_fallback.HttpMediaFetcher("http://hs.test", access_token="secret", client=client)
    archiver = env.archiver(fetcher=fetcher)
    await archiver.process([message(image(mxc), event_id="$s3")])
    await client.aclose()
    assert (await env.row("$s3", mxc))["sha256"] == sha(data)
    assert seen[0].url.path == f"/_matrix/client/v1/media/download/example.org/{media_id(mxc)}"
    assert seen[0].headers["authorization"] == "Bearer secret"


async def test_media__http_fallback_404_is_missing_with_both_reasons(env: Env) -> None:
    mxc = await env.upload(os.urandom(10), "image/png", "gone.png")
    (env.media_store / refs.local_content_path(media_id(mxc))).unlink()
    transport = httpx.MockTransport(lambda request: httpx.Response(404))
    client = httpx.AsyncClient(base_url="http://hs.test", transport=transport)
    fetcher = http_fallback.HttpMediaFetcher("http://hs.test", access_token="t", client=client)
    await env.archiver(fetcher=fetcher).process([message(image(mxc), event_id="$404")])
    await client.aclose()
    row = await env.row("$404", mxc)
    assert row["status"] == "missing"
    assert "HTTP fallback" in row["status_reason"]


# -- bounded memory ---------------------------------------------------------------------------


@pytest.fixture
def traced() -> Iterator[None]:
    tracemalloc.start()
    try:
        yield
    finally:
        tracemalloc.stop()


async def test_media__a_64_mb_file_is_streamed_never_read_whole(env: Env, traced: None) -> None:
    size = 64 * 1024 * 1024
    mid = "BigFileAbcdefghijklmnopq"
    path = env.media_store / refs.local_content_path(mid)
    path.parent.mkdir(parents=True)
    digest = hashlib.sha256()
    with path.open("wb") as out:  # sparse except for a random block every 8 MiB
        for offset in range(0, size, 8 * 1024 * 1024):
            out.seek(offset)
            block = os.urandom(4096)
            out.write(block)
        out.truncate(size)
    with path.open("rb") as src:
        while chunk := src.read(1 << 20):
            digest.update(chunk)
    await env.synapse.execute(
        "INSERT INTO local_media_repository (media_id, media_type, media_length, created_ts,"
        " user_id) VALUES ($1, 'video/mp4', $2, 1700000000000, '@b:x')",
        mid, size,
    )  # fmt: skip
    mxc = f"mxc://{SERVER}/{mid}"
    tracemalloc.reset_peak()
    await env.archiver().process([message({"msgtype": "m.video", "url": mxc}, event_id="$big")])
    _, peak = tracemalloc.get_traced_memory()
    row = await env.row("$big", mxc)
    assert (row["status"], row["size_bytes"], row["sha256"]) == ("stored", size, digest.hexdigest())
    # A few chunks (blobstore.CHUNK_BYTES) at most, never the 64 MiB file.
    limit = 3 * blobstore.CHUNK_BYTES
    assert peak < limit, f"peak Python allocation {peak} bytes while copying 64 MiB"


# -- a real Synapse ------------------------------------------------------------------------------


@pytest.mark.synapse
async def test_media__real_synapse_upload_round_trip(
    synapse_server: Any, http_writer: synapse_writer.HttpSynapseWriter, archive_template: str
) -> None:
    """Bytes uploaded through a real Synapse are found where Synapse put them."""
    ghost = f"@whatsapp_{uuid.uuid4().hex[:8]}:{synapse_server.server_name}"
    await http_writer.ensure_user(ghost, "Ghost")
    room = await http_writer.create_room(ghost, name="media round trip")
    png = bridge.make_png(120, 90, random.Random(5))
    mxc = await http_writer.upload_media(png, "image/png", "real.png", ghost)
    content = image(mxc) | {"info": {"mimetype": "image/png", "size": len(png), "w": 120, "h": 90}}
    event_id = await http_writer.send_event(room, ghost, "m.room.message", content)

    name = pg.unique_name("t_media_real_arc")
    archive = await asyncpg.create_pool(
        await pg.create_database(name, template=archive_template), min_size=1, max_size=2
    )
    synapse = await asyncpg.create_pool(synapse_server.db_url, min_size=1, max_size=2)
    try:
        source = media_source.MediaSource(synapse)
        events = await source.event_contents([event_id])
        thumbs = await source.local_thumbnails([media_id(mxc)])
        for thumb in thumbs[media_id(mxc)]:  # the thumbnail path rule matches real files
            assert (synapse_server.media_store_path / thumb.relative_path).is_file()
        event = events[event_id][0]
        archiver = media.MediaArchiver(
            source=source,
            sink=postgres_media.PgMediaSink(archive),
            store=blobstore.LocalBlobStore(synapse_server.workdir / f"archive-{name}"),
            media_store_path=synapse_server.media_store_path,
            server_name=synapse_server.server_name,
        )
        msg = media.MediaMessage(event_id, event.event_type, event.content, event.room_id)
        assert await archiver.process([msg]) == collections.Counter(stored=1)
        row = await archive.fetchrow("SELECT * FROM media WHERE event_id = $1", event_id)
        assert row is not None
        assert (row["sha256"], row["size_bytes"], row["width"]) == (sha(png), len(png), 120)
        assert row["original_filename"] == "IMG.png"
        assert len(thumbs[media_id(mxc)]) >= 2
    finally:
        await archive.close()
        await synapse.close()
        await pg.drop_database(name)


class GatedStore:
    """The real store, but a copy over one chunk holds its slot until ``release`` is set."""

    def __init__(self, inner: blobstore.LocalBlobStore) -> None:
        self.inner = inner
        self.release = asyncio.Event()
        self.big_started = asyncio.Event()

    async def exists(self, key: str) -> bool:
        return await self.inner.exists(key)

    async def ingest(
        self, source: blobstore.Source, *, slot: blobstore.Slot | None = None, **kwargs: Any
    ) -> blobstore.StoredBlob:
        assert slot is not None
        if (kwargs["expected_size"] or 0) <= media.SMALL_FILE_BYTES:
            return await self.inner.ingest(source, slot=slot, **kwargs)
        async with slot:
            self.big_started.set()
            await self.release.wait()
            return await self.inner.ingest(source, **kwargs)


async def test_media__photos_are_stored_while_every_big_copy_slot_is_busy(env: Env) -> None:
    big = await env.upload(os.urandom(media.SMALL_FILE_BYTES + 1), "video/mp4", "v.mp4")
    photos = [await env.upload(os.urandom(2000), "image/png", f"{n}.png") for n in range(5)]
    store = GatedStore(env.store.inner)
    archiver = env.archiver(store=store, workers=1, small_file_workers=2)
    video = message({"msgtype": "m.video", "body": "v.mp4", "url": big}, event_id="$video")
    run = asyncio.create_task(archiver.process([video]))
    await asyncio.wait_for(store.big_started.wait(), 10)

    # The only big-file slot is held: the photos go through their own slots meanwhile.
    done = await asyncio.wait_for(archiver.process([message(image(mxc)) for mxc in photos]), 10)
    assert done == collections.Counter(stored=5)
    assert not run.done()

    store.release.set()
    assert await asyncio.wait_for(run, 10) == collections.Counter(stored=1)
    assert (await env.row("$video", big))["status"] == "stored"
