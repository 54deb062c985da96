"""A tiny TCP proxy in front of PostgreSQL that loses connections the way production does.

For the fault tests and the soak: ``black_hole`` stops forwarding on chosen links without a FIN
or RST (a dead NAT entry, a pulled cable), ``stop`` refuses new connections and resets open ones
(a database that went away), ``start`` brings it back on the same port.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit


@dataclass(eq=False)
class _Link:
    """One proxied client connection and its upstream connection."""

    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter
    hello: bytearray = field(default_factory=bytearray)  # the client's first bytes (startup)
    flowing: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def abort(self) -> None:
        for writer in (self.client, self.upstream):
            writer.transport.abort()


class TcpProxy:
    """Forwards 127.0.0.1:<port> to PostgreSQL; can black-hole links or go away entirely."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self._up = False
        self.port = 0

    async def start(self) -> None:
        """Listen (again, on the same port after a ``stop``)."""
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self._up = True
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """The database goes away: refuse new connections and reset the open ones."""
        self._up = False  # a connection accepted just before this is reset as soon as it links
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        links, self._links = list(self._links), set()
        for link in links:
            link.abort()
            for task in link.tasks:
                task.cancel()
            await asyncio.gather(*link.tasks, return_exceptions=True)

    def black_hole(self, marker: bytes) -> int:
        """Stop forwarding, in both directions and without closing, every open link whose
        startup message contains ``marker``; new connections still go through."""
        frozen = [link for link in self._links if marker in link.hello]
        for link in frozen:
            link.flowing.clear()
        return len(frozen)

    def url_for(self, url: str) -> str:
        parts = urlsplit(url)
        userinfo = parts.netloc.rpartition("@")[0]
        netloc = f"{userinfo}@127.0.0.1:{self.port}" if userinfo else f"127.0.0.1:{self.port}"
        # No TLS, so the startup message (and its application_name) can be recognised.
        query = "&".join(filter(None, [parts.query, "sslmode=disable"]))
        return urlunsplit(parts._replace(netloc=netloc, query=query))

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.transport.abort()
            return
        link = _Link(writer, up_writer)
        if not self._up:
            link.abort()
            return
        link.flowing.set()
        self._links.add(link)
        link.tasks = [
            asyncio.create_task(self._pump(link, reader, up_writer, sniff=True)),
            asyncio.create_task(self._pump(link, up_reader, writer, sniff=False)),
        ]

    async def _pump(
        self,
        link: _Link,
        source: asyncio.StreamReader,
        sink: asyncio.StreamWriter,
        *,
        sniff: bool,
    ) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while True:
                await link.flowing.wait()
                data = await source.read(65536)
                if not data:
                    break
                if sniff and len(link.hello) < 4096:
                    link.hello += data
                await link.flowing.wait()  # bytes read just before a black hole are dropped too
                sink.write(data)
                await sink.drain()
        if link.flowing.is_set():  # a black-holed link stays open until the proxy stops
            link.abort()
            self._links.discard(link)


@contextlib.asynccontextmanager
async def proxy_to(url: str) -> AsyncIterator[tuple[TcpProxy, str]]:
    parts = urlsplit(url)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    await proxy.start()
    try:
        yield proxy, proxy.url_for(url)
    finally:
        await proxy.stop()
