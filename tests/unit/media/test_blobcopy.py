"""The byte-moving loops under blobstore.stage: what is copied is what is fed (hashed)."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import pytest

from listener.media import blobcopy

CHUNK = 64 * 1024


class Fed:
    def __init__(self) -> None:
        self.hash = hashlib.sha256()
        self.size = 0

    def __call__(self, chunk: memoryview) -> memoryview:
        self.hash.update(chunk)
        self.size += len(chunk)
        return chunk


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    return tmp_path / "src", tmp_path / "dst"


def _open(src: Path, dst: Path) -> tuple[int, int]:
    return os.open(src, os.O_RDONLY), os.open(dst, os.O_RDWR | os.O_CREAT | os.O_EXCL)


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, 5 * CHUNK + 7])
def test_copy_file__feeds_exactly_the_copied_bytes(files: tuple[Path, Path], size: int) -> None:
    src, dst = files
    data = os.urandom(size)
    src.write_bytes(data)
    fed = Fed()
    src_fd, dst_fd = _open(src, dst)
    try:
        copied = blobcopy.copy_file(
            src_fd, dst_fd, fed, chunk_bytes=CHUNK, limit=1 << 40, cancelled=threading.Event()
        )
    finally:
        os.close(src_fd)
        os.close(dst_fd)
    assert copied
    assert dst.read_bytes() == data
    assert (fed.size, fed.hash.hexdigest()) == (size, hashlib.sha256(data).hexdigest())


def test_copy_file__stops_one_byte_past_the_limit(files: tuple[Path, Path]) -> None:
    src, dst = files
    src.write_bytes(os.urandom(10 * CHUNK))
    fed = Fed()
    src_fd, dst_fd = _open(src, dst)
    try:
        blobcopy.copy_file(
            src_fd, dst_fd, fed, chunk_bytes=CHUNK, limit=CHUNK + 1, cancelled=threading.Event()
        )
    finally:
        os.close(src_fd)
        os.close(dst_fd)
    assert fed.size == CHUNK + 1


def test_copy_file__declines_what_the_kernel_cannot_copy_and_read_write_does_it(
    files: tuple[Path, Path],
) -> None:
    _, dst = files
    data = os.urandom(3 * CHUNK + 5)
    read_end, write_end = os.pipe()
    dst_fd = os.open(dst, os.O_RDWR | os.O_CREAT | os.O_EXCL)
    try:
        fed = Fed()
        assert not blobcopy.copy_file(
            read_end, dst_fd, fed, chunk_bytes=CHUNK, limit=1 << 40, cancelled=threading.Event()
        )
        writer = threading.Thread(target=lambda: (os.write(write_end, data), os.close(write_end)))
        writer.start()
        blobcopy.read_write(read_end, dst_fd, fed, chunk_bytes=CHUNK, cancelled=threading.Event())
        writer.join()
    finally:
        os.close(read_end)
        os.close(dst_fd)
    assert dst.read_bytes() == data
    assert fed.hash.hexdigest() == hashlib.sha256(data).hexdigest()
