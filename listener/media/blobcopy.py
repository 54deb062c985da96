"""The loops that move a blob's bytes for :func:`listener.media.blobstore.stage`.

:func:`copy_file` (plain files): the kernel copies (``copy_file_range``: no user-space copy of
the bytes, a reflink where the file system has them) on one thread while this thread reads the
*copied* bytes back from the page cache and hashes them. The hash is therefore of the bytes that
are stored, not of a source that could change between two reads, and hashing (the dominant cost
of a large copy) overlaps the copy. :func:`read_write` (encrypted attachments, file systems
without ``copy_file_range``): one reusable buffer, read, decrypt/hash, write.

Both loops ask the kernel to start writing a chunk back once the next one is written
(:class:`Writeback`, a hint, not a barrier): the caller's flush then waits for the tail only,
and a 1 GiB copy does not leave 1 GiB of dirty pages to flush at once (text latency while
1 GiB videos copied: without the hints one text waited 386 ms). Issuing a hint blocks while
the device's queue is full, so the copy proceeds at the disk's pace; that is deliberate. The
hints were tried on a thread of their own: the copy alone ran steadier (1 GiB in 0.86-1.0 s
against 0.84-2.9 s), but the end-to-end benchmark saw no difference beyond its noise while
the text path's p99 during video copies rose from 18-26 ms to 39-40 ms. A file of one
chunk (a photo) gets no hint: its pages go out with the rest of its group's flush in one
merged write instead of an I/O of their own.
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import os
import queue
import threading
from collections.abc import Callable

Feed = Callable[[memoryview], bytes | memoryview]  # counts, checks, hashes; returns plaintext
_Range = tuple[int, int] | BaseException | None

# copy_file_range refuses these file pairs (other file system, no support): nothing was copied.
_NO_COPY_RANGE = frozenset({errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP})
_SYNC_FILE_RANGE_WRITE = 2


def _sync_file_range() -> Callable[[int, int, int], object] | None:
    try:
        function = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):  # not Linux/glibc: the hint is skipped
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    function.restype = ctypes.c_int

    def start(fd: int, offset: int, nbytes: int) -> object:
        return function(fd, offset, nbytes, _SYNC_FILE_RANGE_WRITE)

    return start


_start_writeback = _sync_file_range()


class Writeback:
    """Starts write-back of a file's finished bytes (a hint: failures are ignored, durability
    comes from the flush that follows, never from this)."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._done_up_to = 0

    def final_up_to(self, offset: int) -> None:
        """The bytes before ``offset`` will not be written again: start writing them back."""
        if _start_writeback is not None and offset > self._done_up_to:
            _start_writeback(self._fd, self._done_up_to, offset - self._done_up_to)
            self._done_up_to = offset


def copy_file(
    src_fd: int,
    dst_fd: int,
    feed: Feed,
    *,
    chunk_bytes: int,
    limit: int,
    cancelled: threading.Event,
) -> bool:
    """Copy ``src_fd`` to the empty ``dst_fd`` in the kernel, feeding the copied bytes in order.

    Copies at most ``limit`` bytes (one more than the expected size lets ``feed`` see an
    oversized source). Returns False, having copied nothing, when the kernel cannot copy between
    these files; the caller then uses :func:`read_write`.
    """
    try:
        first = os.copy_file_range(src_fd, dst_fd, min(chunk_bytes, limit))
    except OSError as exc:
        if exc.errno in _NO_COPY_RANGE:
            return False
        raise
    if first == 0 and os.fstat(src_fd).st_size > 0:
        return False  # a file that reports no data to copy_file_range (procfs-like)
    ranges: queue.SimpleQueue[_Range] = queue.SimpleQueue()
    ranges.put((0, first))
    stop = threading.Event()
    writeback = Writeback(dst_fd)
    args = (src_fd, dst_fd, first, ranges, stop, writeback, chunk_bytes, limit)
    copier = None
    if first == chunk_bytes:  # more to come: copy on a second thread while this one hashes
        copier = threading.Thread(target=_copy_rest, args=args, name="blob-copy", daemon=True)
        copier.start()
    elif first:
        _copy_rest(*args)  # a small file: the next call returns 0 (end of file)
    else:
        ranges.put(None)
    try:
        _hash_copied(dst_fd, ranges, feed, cancelled)
    finally:
        stop.set()
        if copier is not None:
            copier.join()
    return True


def _copy_rest(
    src_fd: int,
    dst_fd: int,
    offset: int,
    ranges: queue.SimpleQueue[_Range],
    stop: threading.Event,
    writeback: Writeback,
    chunk_bytes: int,
    limit: int,
) -> None:
    """The copying side: hands each copied range (or its error) to the hashing side."""
    try:
        while offset < limit and not stop.is_set():
            n = os.copy_file_range(src_fd, dst_fd, min(chunk_bytes, limit - offset))
            if n == 0:
                break
            writeback.final_up_to(offset)  # the chunks before this one
            ranges.put((offset, n))
            offset += n
        ranges.put(None)
    except BaseException as exc:  # re-raised on the hashing thread, which owns the outcome
        ranges.put(exc)


def _hash_copied(
    dst_fd: int, ranges: queue.SimpleQueue[_Range], feed: Feed, cancelled: threading.Event
) -> None:
    """The hashing side: reads each copied range back (from the page cache) and feeds it."""
    view = memoryview(bytearray(0))  # sized by the largest range: a photo needs no 4 MiB
    while (item := ranges.get()) is not None:
        if isinstance(item, BaseException):
            raise item
        if cancelled.is_set():
            raise asyncio.CancelledError
        offset, n = item  # n <= chunk_bytes: copy_file_range never copies more than asked
        if n > len(view):
            view = memoryview(bytearray(n))
        _pread_exact(dst_fd, view[:n], offset)
        feed(view[:n])


def read_write(
    src_fd: int, dst_fd: int, feed: Feed, *, chunk_bytes: int, cancelled: threading.Event
) -> None:
    """Read, feed (decrypt/hash), write, one reusable buffer at a time."""
    view = memoryview(bytearray(chunk_bytes))
    offset = 0
    writeback = Writeback(dst_fd)
    while n := os.readv(src_fd, [view]):
        if cancelled.is_set():
            raise asyncio.CancelledError
        plain = feed(view[:n])
        writeback.final_up_to(offset)  # the chunks before this one
        write_all(dst_fd, plain)
        offset += len(plain)


def write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _pread_exact(fd: int, view: memoryview, offset: int) -> None:
    while view:
        n = os.preadv(fd, [view], offset)
        if n == 0:
            raise OSError(errno.EIO, "copied bytes vanished before they were hashed")
        view, offset = view[n:], offset + n
