"""Group durability for :class:`~listener.media.blobstore.LocalBlobStore`: many blobs per flush.

Publishing a staged blob (a verified temporary file under ``<root>/.incoming``) takes three
steps in this order: its bytes durable, its name linked at the content address, that name
durable. Done one blob at a time with ``fsync``, each blob pays two journal commits and two
disk-cache flushes (the file's, then its directory's); on ext4 even an ``fsync`` whose commit
another call already made issues its own cache flush. On this project's virtio disk that is
~1 ms a flush: more than copying a photo.

So copies do not wait for durability one by one. :class:`GroupCommit` collects the blobs that
finish staging while the previous batch is being made durable and publishes them together:
``syncfs`` (every dirty page of the file system, and one journal commit), link them all,
``syncfs`` again. Two flushes per batch, however many blobs it holds. A batch of one keeps the
targeted ``fsync`` calls, which do not wait for the rest of the file system's dirty pages.
Where ``syncfs`` is unavailable (not Linux/glibc) every batch uses the ``fsync`` calls.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

Outcome = bool | BaseException  # created (False: the address already held these bytes)


@dataclass(frozen=True, slots=True)
class PendingBlob:
    """A staged blob whose bytes are written but not known to be durable."""

    temp: Path  # under <root>/.incoming; removed once the batch is done, whatever happens
    final: Path  # its content address; the directory exists (created before staging)


def _load_syncfs() -> Callable[[int], None] | None:
    try:
        function = ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int]
    function.restype = ctypes.c_int

    def syncfs(fd: int) -> None:
        if function(fd) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"syncfs: {os.strerror(errno)}")

    return syncfs


_syncfs = _load_syncfs()


def publish_batch(root: Path, blobs: list[PendingBlob]) -> list[Outcome]:
    """Make ``blobs`` durable at their addresses (synchronous: run it in a worker thread).

    Returns, per blob, whether this call created its address, or the error that stopped it.
    The bytes of every blob are durable before any name pointing at them can be, and every
    name is durable before this returns. Temporary files are removed in all cases.
    """
    try:
        if _syncfs is not None and len(blobs) > 1:
            return _publish_with_syncfs(root, blobs, _syncfs)
        return [_publish_one(blob) for blob in blobs]
    finally:
        for blob in blobs:
            blob.temp.unlink(missing_ok=True)


def _publish_with_syncfs(
    root: Path, blobs: list[PendingBlob], syncfs: Callable[[int], None]
) -> list[Outcome]:
    try:
        _on_fd(root, os.O_RDONLY | os.O_DIRECTORY, syncfs)  # every staged file's bytes
    except OSError as exc:  # since Linux 5.8 syncfs reports write-back errors: trust nothing
        return [exc for _ in blobs]
    outcomes: list[Outcome] = [_link(blob) for blob in blobs]
    try:
        _on_fd(root, os.O_RDONLY | os.O_DIRECTORY, syncfs)  # every new name
    except OSError as exc:
        return [exc for _ in blobs]
    return outcomes


def _publish_one(blob: PendingBlob) -> Outcome:
    try:
        created: Outcome = False
        if not blob.final.exists():
            _on_fd(blob.temp, os.O_RDONLY, os.fsync)
            created = _link(blob)
            if isinstance(created, BaseException):
                return created
        # Also when the address existed: it may have been linked by a process that died
        # before this fsync (same boot, so still only in the page cache).
        fsync_directory(blob.final.parent)
    except OSError as exc:
        return exc
    return created


def _link(blob: PendingBlob) -> Outcome:
    """Name the staged file at its address, never clobbering what is there."""
    try:
        os.link(blob.temp, blob.final)
    except FileExistsError:
        return False  # stored before, or by an earlier blob of this batch with the same bytes
    except OSError as exc:
        return exc
    return True


def fsync_directory(directory: Path) -> None:
    """Make ``directory``'s entries (names created or removed in it) durable."""
    _on_fd(directory, os.O_RDONLY | os.O_DIRECTORY, os.fsync)


def _on_fd(path: Path, flags: int, action: Callable[[int], object]) -> None:
    fd = os.open(path, flags | os.O_CLOEXEC)
    try:
        action(fd)
    finally:
        os.close(fd)


class GroupCommit:
    """Publishes blobs in batches: whatever arrived while the previous batch was flushing.

    One batch at a time runs in a worker thread; :meth:`publish` resolves with the blob's
    outcome. A caller cancelled while waiting does not cancel the batch (its blob is published
    or its temporary file removed all the same), so no blob is left half-published.
    """

    def __init__(self, root: Path, *, max_batch: int = 512) -> None:
        self._root = root
        self._max_batch = max_batch
        self._queue: list[tuple[PendingBlob, asyncio.Future[bool]]] = []
        self._task: asyncio.Task[None] | None = None
        self.batches = 0  # for tests and benchmarks: how many flushes the blobs shared

    async def publish(self, blob: PendingBlob) -> bool:
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._queue.append((blob, future))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._drain(), name="blob-group-commit")
        return await asyncio.shield(future)

    async def _drain(self) -> None:
        while self._queue:
            batch = self._queue[: self._max_batch]
            del self._queue[: self._max_batch]
            blobs = [blob for blob, _ in batch]
            try:
                outcomes = await asyncio.to_thread(publish_batch, self._root, blobs)
            except BaseException as exc:  # cancelled at shutdown, or a bug: fail the waiters
                # The running batch's thread goes on and removes its own temporary files.
                for blob, _ in self._queue:
                    blob.temp.unlink(missing_ok=True)
                for _, future in [*batch, *self._queue]:
                    if not future.done():
                        future.set_exception(OSError(f"blob not published: {exc!r}"))
                self._queue.clear()
                raise
            self.batches += 1
            for (_, future), outcome in zip(batch, outcomes, strict=True):
                if future.done():
                    continue
                if isinstance(outcome, BaseException):
                    future.set_exception(outcome)
                else:
                    future.set_result(outcome)
