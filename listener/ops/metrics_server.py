"""A small HTTP server for ``/metrics`` (Prometheus), ``/healthz`` and ``/readyz`` (JSON).

Stdlib asyncio streams: three read-only GET routes do not justify a web framework. Each request
is read under a timeout and a size limit, answered, and the connection closed. The server binds
``METRICS_ADDR`` (default ``127.0.0.1:9464``: reachable from this host only; binding a public
address is an explicit choice). ``METRICS_ADDR=off`` disables it.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from http import HTTPStatus

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from listener.core import errors
from listener.ops import probes

logger = logging.getLogger(__name__)

REQUEST_TIMEOUT_S = 5.0
MAX_REQUEST_BYTES = 8192
DISABLED = frozenset({"", "off", "none", "disabled"})
LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})

ReportSource = Callable[[], probes.Report]
Response = tuple[HTTPStatus, str, bytes]


def parse_addr(addr: str) -> tuple[str, int] | None:
    """``host:port`` (``[v6]:port`` too) from METRICS_ADDR; None when disabled."""
    if addr.strip().lower() in DISABLED:
        return None
    host, sep, port = addr.strip().rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise errors.ConfigError(
            f"METRICS_ADDR must be host:port (e.g. 127.0.0.1:9464) or 'off', not {addr!r}"
        )
    return host, int(port)


def route(
    method: str, path: str, *, registry: CollectorRegistry, live: ReportSource, ready: ReportSource
) -> Response:
    """The response for one request (pure apart from collecting the metrics)."""
    if method not in ("GET", "HEAD"):
        return HTTPStatus.METHOD_NOT_ALLOWED, "text/plain; charset=utf-8", b"GET only\n"
    path = path.split("?", 1)[0]
    if path == "/metrics":
        return HTTPStatus.OK, CONTENT_TYPE_LATEST, generate_latest(registry)
    if path in ("/healthz", "/readyz"):
        report = live() if path == "/healthz" else ready()
        status = HTTPStatus.OK if report.ok else HTTPStatus.SERVICE_UNAVAILABLE
        body = json.dumps(report.as_json(), sort_keys=True).encode() + b"\n"
        return status, "application/json", body
    return HTTPStatus.NOT_FOUND, "text/plain; charset=utf-8", b"try /metrics, /healthz, /readyz\n"


class MetricsServer:
    def __init__(
        self,
        addr: str,
        *,
        registry: CollectorRegistry,
        live: ReportSource,
        ready: ReportSource,
    ) -> None:
        self.bind = parse_addr(addr)
        self._registry = registry
        self._live = live
        self._ready = ready
        self._server: asyncio.Server | None = None
        self.port: int | None = None

    async def start(self) -> bool:
        """Start listening; a bind failure is logged, not raised (archiving goes on without it)."""
        if self.bind is None:
            logger.info(
                "metrics server disabled (METRICS_ADDR=off)", extra={"action": "metrics_off"}
            )
            return False
        host, port = self.bind
        try:
            self._server = await asyncio.start_server(
                self._handle, host, port, limit=MAX_REQUEST_BYTES
            )
        except OSError as exc:
            logger.error(
                "metrics server cannot listen on %s:%d (%s): /metrics, /healthz and /readyz are "
                "unavailable; set METRICS_ADDR to a free address",
                host,
                port,
                exc.strerror or exc,
                extra={"action": "metrics_server_failed"},
            )
            return False
        self.port = self._server.sockets[0].getsockname()[1]
        exposure = "" if host in LOOPBACK else " (not loopback: reachable from the network)"
        logger.info(
            "serving /metrics, /healthz, /readyz on %s:%d%s",
            host,
            self.port,
            exposure,
            extra={"action": "metrics_server_listening"},
        )
        return True

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), REQUEST_TIMEOUT_S)
            method, path = _request_line(head)
            status, content_type, body = route(
                method, path, registry=self._registry, live=self._live, ready=self._ready
            )
            writer.write(_response(status, content_type, body, with_body=method != "HEAD"))
            await asyncio.wait_for(writer.drain(), REQUEST_TIMEOUT_S)
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            writer.write(_response(HTTPStatus.BAD_REQUEST, "text/plain", b"bad request\n"))
        except ConnectionError:
            pass  # the scraper went away; nothing to answer
        finally:
            writer.close()


def _request_line(head: bytes) -> tuple[str, str]:
    parts = head.split(b"\r\n", 1)[0].decode("latin-1").split()
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        raise ValueError("not an HTTP request line")
    return parts[0], parts[1]


def _response(
    status: HTTPStatus, content_type: str, body: bytes, *, with_body: bool = True
) -> bytes:
    head = (
        f"HTTP/1.1 {status.value} {status.phrase}\r\n"
        f"Content-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Cache-Control: no-store\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode("latin-1") + (body if with_body else b"")
