"""Group durability of the local blob store: what a batch publishes, and what it never does."""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path

import pytest

from listener.core import errors
from listener.media import blobcommit, blobstore


def _staged(root: Path, data: bytes) -> blobcommit.PendingBlob:
    """A staged blob as the store leaves it: a temp file, its address's directory present."""
    incoming = root / blobstore.INCOMING_DIR
    incoming.mkdir(parents=True, exist_ok=True)
    temp = incoming / f"{os.urandom(8).hex()}.part"
    temp.write_bytes(data)
    sha = hashlib.sha256(data).hexdigest()
    final = root.joinpath(*blobstore.blob_key(sha).split("/"))
    final.parent.mkdir(exist_ok=True)
    return blobcommit.PendingBlob(temp, final)


@pytest.mark.parametrize("count", [1, 2, 7])  # one blob takes the fsync path, more syncfs
def test_publish_batch__names_every_blob_and_leaves_no_temp_file(
    tmp_path: Path, count: int
) -> None:
    payloads = [os.urandom(1000 + n) for n in range(count)]
    blobs = [_staged(tmp_path, data) for data in payloads]

    outcomes = blobcommit.publish_batch(tmp_path, blobs)

    assert outcomes == [True] * count
    for blob, data in zip(blobs, payloads, strict=True):
        assert blob.final.read_bytes() == data
        assert not blob.temp.exists()


@pytest.mark.parametrize("count", [1, 3])
def test_publish_batch__existing_address_is_kept_and_reported_not_created(
    tmp_path: Path, count: int
) -> None:
    data = b"forwarded photo"
    first = _staged(tmp_path, data)
    assert blobcommit.publish_batch(tmp_path, [first]) == [True]
    inode = first.final.stat().st_ino

    again = [_staged(tmp_path, data) for _ in range(count)]
    outcomes = blobcommit.publish_batch(tmp_path, again)

    assert outcomes == [False] * count
    assert first.final.stat().st_ino == inode  # never clobbered
    assert not any(blob.temp.exists() for blob in again)


def test_publish_batch__same_bytes_twice_in_one_batch_are_stored_once(tmp_path: Path) -> None:
    blobs = [_staged(tmp_path, b"same"), _staged(tmp_path, b"same"), _staged(tmp_path, b"other")]

    outcomes = blobcommit.publish_batch(tmp_path, blobs)

    assert outcomes == [True, False, True]
    assert blobs[0].final.read_bytes() == b"same"


def test_publish_batch__one_failed_link_fails_that_blob_only(tmp_path: Path) -> None:
    good, bad = _staged(tmp_path, b"good"), _staged(tmp_path, b"bad")
    bad.final.parent.rmdir()  # its shard directory vanished: the link cannot be made

    outcomes = blobcommit.publish_batch(tmp_path, [good, bad])

    assert outcomes[0] is True
    assert isinstance(outcomes[1], FileNotFoundError)
    assert good.final.read_bytes() == b"good"
    assert not good.temp.exists()
    assert not bad.temp.exists()


async def test_group_commit__concurrent_blobs_share_one_flush(tmp_path: Path) -> None:
    commits = blobcommit.GroupCommit(tmp_path)
    blobs = [_staged(tmp_path, os.urandom(100)) for _ in range(50)]

    outcomes = await asyncio.gather(*(commits.publish(blob) for blob in blobs))

    assert outcomes == [True] * 50
    assert commits.batches == 1
    assert all(blob.final.exists() and not blob.temp.exists() for blob in blobs)


async def test_group_commit__a_cancelled_waiter_does_not_cancel_its_blobs_publication(
    tmp_path: Path,
) -> None:
    commits = blobcommit.GroupCommit(tmp_path)
    blob = _staged(tmp_path, b"still published")
    waiter = asyncio.create_task(commits.publish(blob))
    await asyncio.sleep(0)  # the blob is queued and its batch started
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter

    # The batch goes on: a later publication waits behind it and finds the address stored.
    later = _staged(tmp_path, b"still published")
    assert await commits.publish(later) is False
    assert blob.final.read_bytes() == b"still published"
    assert not blob.temp.exists()


class RecordingSlot:
    """A copy slot that notes how many group flushes had happened when it was released."""

    def __init__(self, store: blobstore.LocalBlobStore) -> None:
        self.store = store
        self.flushes_at_release: list[int] = []

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, *exc: object) -> None:
        self.flushes_at_release.append(self.store.flushes)


async def test_local_store__releases_the_copy_slot_before_waiting_for_durability(
    tmp_path: Path,
) -> None:
    source = tmp_path / "photo.jpg"
    source.write_bytes(os.urandom(5000))
    store = blobstore.LocalBlobStore(tmp_path / "archive")
    slot = RecordingSlot(store)

    blob = await store.ingest(source, slot=slot)

    assert slot.flushes_at_release == [0]  # the bytes moved under the slot, the flush after it
    assert store.flushes == 1
    assert blob.key == f"{blob.sha256[:2]}/{blob.sha256}"
    assert store.path_of(blob.key).read_bytes() == source.read_bytes()
    assert sorted(p.name for p in store.root.iterdir() if p.name != blobstore.INCOMING_DIR) == (
        blobstore.SHARDS
    )


async def test_local_store__a_vanished_shard_directory_is_a_sink_outage_then_healed(
    tmp_path: Path,
) -> None:
    source = tmp_path / "photo.jpg"
    source.write_bytes(b"a photo whose shard is deleted under the service")
    sha = hashlib.sha256(source.read_bytes()).hexdigest()
    store = blobstore.LocalBlobStore(tmp_path / "archive")
    await store.open()
    (store.root / sha[:2]).rmdir()

    with pytest.raises(errors.SinkUnavailable, match="archive directory missing"):
        await store.ingest(source)

    blob = await store.ingest(source)  # the layout is made again; nothing left behind
    assert blob.created
    assert store.path_of(blob.key).read_bytes() == source.read_bytes()
    assert list((store.root / blobstore.INCOMING_DIR).iterdir()) == []
