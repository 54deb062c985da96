"""Run the viewer: a read-only pool on the archive, the pages, uvicorn on VIEWER_ADDR."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import tzinfo
from pathlib import Path

import httpx
import uvicorn

from listener.core import errors
from listener.db import connect as pgconnect
from listener.viewer import app as viewer_app
from listener.viewer import media_files, reader

logger = logging.getLogger(__name__)

POOL_SIZE = 8
QUERY_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class SupabaseStorage:
    url: str
    key: str
    bucket: str


def parse_addr(addr: str) -> tuple[str, int]:
    host, sep, port = addr.strip().rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) <= 65535:
        raise errors.ConfigError(
            f"VIEWER_ADDR must be host:port (e.g. 127.0.0.1:8080), not {addr!r}"
        )
    return host, int(port)


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound here so that a taken port is our clear error, not uvicorn's
    exit."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise errors.ConfigError(
            f"the viewer cannot listen on {host}:{port}: {exc.strerror}"
        ) from None
    sock.listen(128)
    sock.setblocking(False)
    return sock


@contextlib.asynccontextmanager
async def media_source(
    *, media_root: Path | None, storage: SupabaseStorage | None
) -> AsyncIterator[media_files.MediaFiles]:
    if storage is not None:
        async with httpx.AsyncClient(timeout=httpx.Timeout(30.0, connect=10.0)) as client:
            yield media_files.SupabaseMediaFiles(
                client, base_url=storage.url, key=storage.key, bucket=storage.bucket
            )
    else:
        # Without MEDIA_ARCHIVE_PATH the pages still show every message; media answers 404.
        yield media_files.LocalMediaFiles(media_root or Path("/nonexistent-media-archive"))


async def serve(
    *,
    archive_url: str,
    addr: str,
    token: str,
    zone: tzinfo,
    page_size: int,
    media_root: Path | None = None,
    storage: SupabaseStorage | None = None,
    ready: Callable[[str], None] | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Serve until ``stop`` is set (or SIGINT/SIGTERM when there is no ``stop``)."""
    host, port = parse_addr(addr)
    sock = bind(host, port)
    pool = await pgconnect.create_pool(
        archive_url,
        application_name="archiver-db:viewer",
        max_size=POOL_SIZE,
        command_timeout_s=QUERY_TIMEOUT_S,
        error=errors.SinkError,
        read_only=True,
    )
    try:
        async with media_source(media_root=media_root, storage=storage) as media:
            application = viewer_app.build(
                reader.ArchiveReader(pool), media, token=token, zone=zone, page_size=page_size
            )
            config = uvicorn.Config(
                application,
                host=host,
                port=port,
                lifespan="off",
                log_config=None,
                access_log=False,
                server_header=False,
                proxy_headers=True,  # X-Forwarded-Proto from a local TLS proxy: Secure cookies
                timeout_keep_alive=5,
                timeout_graceful_shutdown=5,
            )
            server = uvicorn.Server(config)
            task = asyncio.create_task(server.serve(sockets=[sock]), name="viewer-http")
            # The socket already listens: a browser that connects now waits in its backlog.
            if ready is not None:
                ready(f"http://{'[' + host + ']' if ':' in host else host}:{port}")
            if stop is not None:
                waiter = asyncio.create_task(stop.wait())
                await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
                server.should_exit = True
                waiter.cancel()
            await task
    finally:
        sock.close()
        await pool.close()
