"""A small HTTP/1.1 server on asyncio streams and h11 (already installed with httpx): keep-alive,
a request's body read whole, faults applied before the handler sees the request, and a switch
to refuse connections on the same port (a dead port, not a closed process)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote, urlsplit

import h11

from tests.supabase_stub import faults as faults_mod

READ_BYTES = 1 << 16


@dataclass
class Request:
    method: str
    path: str  # percent-decoded
    query: list[tuple[str, str]]
    headers: dict[str, str]  # lower-case names
    body: bytes = b""

    def param(self, name: str) -> str | None:
        return next((v for k, v in self.query if k == name), None)


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[[Request], Awaitable[Response]]
# Called with the part of a body that arrived before a fault dropped the connection.
PartialHandler = Callable[[Request, bytes], Awaitable[None]]


class _Dropped(Exception):
    pass


class HttpServer:
    def __init__(
        self,
        handler: Handler,
        *,
        faults: faults_mod.Faults,
        partial: PartialHandler | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self._handler = handler
        self._partial = partial
        self.faults = faults
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.StreamWriter] = set()
        self.requests = 0

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        self._server = await asyncio.start_server(self._serve, sock=sock, backlog=512)

    async def refuse(self) -> None:
        """Stop listening and cut every open connection: new connections are refused."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._connections):
            writer.transport.abort()
        self._connections.clear()

    async def accept(self) -> None:
        if self._server is None:
            await self.start()

    async def stop(self) -> None:
        await self.refuse()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._connections.add(writer)
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                request = await self._read_head(conn, reader)
                if request is None:
                    return
                response = await self._respond(conn, reader, request)
                await self._write(conn, writer, response)
                if conn.our_state is h11.MUST_CLOSE:
                    return
                conn.start_next_cycle()
        except (_Dropped, ConnectionError, h11.ProtocolError, asyncio.IncompleteReadError):
            pass
        finally:
            self._connections.discard(writer)
            writer.transport.abort()

    async def _respond(
        self, conn: h11.Connection, reader: asyncio.StreamReader, request: Request
    ) -> Response:
        self.requests += 1
        fault = self.faults.take(request.method, request.path)
        if fault is not None and fault.drop_after_body_bytes is not None:
            partial = await self._read_body(conn, reader, limit=fault.drop_after_body_bytes)
            if self._partial is not None:
                await self._partial(request, partial)
            raise _Dropped
        request.body = await self._read_body(conn, reader)
        if fault is not None:
            if fault.delay_s:
                await asyncio.sleep(fault.delay_s)
            if fault.drop:
                raise _Dropped
            if fault.status is not None:
                headers = {"content-type": "application/json"}
                if fault.retry_after is not None:
                    headers["retry-after"] = fault.retry_after
                return Response(fault.status, fault.body, headers)
        return await self._handler(request)

    async def _next_event(self, conn: h11.Connection, reader: asyncio.StreamReader) -> object:
        while True:
            event = conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            data = await reader.read(READ_BYTES)
            conn.receive_data(data)  # b"" means the peer closed

    async def _read_head(
        self, conn: h11.Connection, reader: asyncio.StreamReader
    ) -> Request | None:
        event = await self._next_event(conn, reader)
        if isinstance(event, h11.ConnectionClosed) or not isinstance(event, h11.Request):
            return None
        target = urlsplit(event.target.decode("latin-1"))
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in event.headers}
        return Request(
            method=event.method.decode("ascii"),
            path=unquote(target.path),
            query=parse_qsl(target.query, keep_blank_values=True),
            headers=headers,
        )

    async def _read_body(
        self, conn: h11.Connection, reader: asyncio.StreamReader, *, limit: int | None = None
    ) -> bytes:
        body = bytearray()
        while True:
            event = await self._next_event(conn, reader)
            if isinstance(event, h11.Data):
                body += event.data
                if limit is not None and len(body) >= limit:
                    return bytes(body[:limit])
            elif isinstance(event, h11.EndOfMessage):
                return bytes(body)
            else:
                raise _Dropped

    async def _write(
        self, conn: h11.Connection, writer: asyncio.StreamWriter, response: Response
    ) -> None:
        headers = [(k, v) for k, v in response.headers.items()]
        if "content-length" not in response.headers:  # a HEAD answer states the real length
            headers.append(("content-length", str(len(response.body))))
        data = conn.send(h11.Response(status_code=response.status, headers=headers))
        if response.body:
            data += conn.send(h11.Data(data=response.body))
        data += conn.send(h11.EndOfMessage())
        writer.write(data)
        with contextlib.suppress(ConnectionError):
            await writer.drain()
