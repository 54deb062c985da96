"""``/metrics`` (Prometheus), ``/healthz`` and ``/readyz`` (JSON): Starlette on uvicorn.

The same HTTP stack as the viewer, served as one task inside the service's own event loop
(uvloop under the CLI). It binds ``METRICS_ADDR`` (default ``127.0.0.1:9464``: reachable from
this host only; binding a public address is an explicit choice). ``METRICS_ADDR=off`` disables
it. A request head must arrive within the request timeout and fit in ``MAX_REQUEST_BYTES``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
from collections.abc import Awaitable, Callable, Iterator

import h11
import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from uvicorn.protocols.http.h11_impl import H11Protocol

from listener.core import errors
from listener.ops import probes

logger = logging.getLogger(__name__)

REQUEST_TIMEOUT_S = 5
MAX_REQUEST_BYTES = 8192
DISABLED = frozenset({"", "off", "none", "disabled"})
LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})
NO_STORE = {"Cache-Control": "no-store"}
TIMED_OUT = (
    b"HTTP/1.1 408 Request Timeout\r\nContent-Type: text/plain\r\nContent-Length: 16\r\n"
    b"Connection: close\r\n\r\nrequest timeout\n"
)

ReportSource = Callable[[], probes.Report]


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


def app(*, registry: CollectorRegistry, live: ReportSource, ready: ReportSource) -> Starlette:
    """The three read-only routes; anything else is 404 with a hint, other methods 405."""

    # Endpoints are coroutines on purpose: Starlette runs plain functions in a thread pool, and
    # collecting the registry (queue depth callbacks) and the probes read the loop's objects.
    async def scrape(_request: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST, headers=NO_STORE)

    return Starlette(
        routes=[
            Route("/metrics", scrape, methods=["GET"]),
            Route("/healthz", _probe(live), methods=["GET"]),
            Route("/readyz", _probe(ready), methods=["GET"]),
        ],
        exception_handlers={404: _not_found, 405: _get_only},
    )


def _probe(source: ReportSource) -> Callable[[Request], Awaitable[Response]]:
    async def answer(_request: Request) -> Response:
        report = source()
        body = json.dumps(report.as_json(), sort_keys=True).encode() + b"\n"
        status = 200 if report.ok else 503
        return Response(body, status, media_type="application/json", headers=NO_STORE)

    return answer


async def _not_found(_request: Request, _exc: Exception) -> Response:
    return Response(b"try /metrics, /healthz, /readyz\n", 404, NO_STORE, "text/plain")


async def _get_only(_request: Request, exc: Exception) -> Response:
    allow = exc.headers if isinstance(exc, HTTPException) and exc.headers else {}
    return Response(b"GET only\n", 405, {**NO_STORE, **allow}, "text/plain")


class _Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline on each request head.

    uvicorn times out idle keep-alive connections, but not a client that connects and sends
    nothing, nor one that sends its head a byte at a time (slow loris): each would hold a
    connection and its file descriptor for as long as it liked. The deadline is the keep-alive
    timeout, armed on connect and after each response.
    """

    _deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        super().connection_lost(exc)

    def _arm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        self._deadline = self.loop.call_later(self.timeout_keep_alive, self._expire)

    def _expire(self) -> None:
        # IDLE: no complete request head yet (h11 buffers a partial one). A request being
        # answered is left alone; its response re-arms the deadline.
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.write(TIMED_OUT)
            self.transport.close()


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # The service owns SIGTERM and SIGINT (cli.py): uvicorn's handlers would replace them
        # and raise the signal again when the server ends.
        yield


class MetricsServer:
    def __init__(
        self,
        addr: str,
        *,
        registry: CollectorRegistry,
        live: ReportSource,
        ready: ReportSource,
        request_timeout_s: int = REQUEST_TIMEOUT_S,
    ) -> None:
        self.bind = parse_addr(addr)
        self._app = app(registry=registry, live=live, ready=ready)
        self._request_timeout_s = request_timeout_s
        self._server: _Server | None = None
        self._task: asyncio.Task[None] | None = None
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
            # Bound here, not by uvicorn: its bind failure is a SystemExit, and the port is
            # known (and connections queue in the backlog) before the serving task first runs.
            sock = _listen(host, port)
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
        self.port = sock.getsockname()[1]
        self._server = _Server(self._config())
        self._task = asyncio.create_task(self._server.serve([sock]), name="metrics-server")
        self._task.add_done_callback(_report_end)
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
        """Close the listener and its connections (idempotent; bounded by the request timeout)."""
        if self._server is None or self._task is None:
            return
        self._server.should_exit = True
        done, _ = await asyncio.wait({self._task}, timeout=2 * self._request_timeout_s)
        if not done:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._server = self._task = None

    def _config(self) -> uvicorn.Config:
        return uvicorn.Config(
            self._app,
            interface="asgi3",
            http=_Protocol,
            ws="none",
            lifespan="off",
            # Our logging stays ours: no dictConfig, no access log, only uvicorn's warnings
            # (a malformed request) and errors; metrics_server_listening replaces its banner.
            log_config=None,
            log_level="warning",
            access_log=False,
            server_header=False,
            proxy_headers=False,
            timeout_keep_alive=self._request_timeout_s,
            timeout_graceful_shutdown=self._request_timeout_s,
            h11_max_incomplete_event_size=MAX_REQUEST_BYTES,
        )


def _listen(host: str, port: int) -> socket.socket:
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    return socket.create_server((host, port), family=family)


def _report_end(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error(
            "metrics server stopped: /metrics, /healthz and /readyz are unavailable",
            exc_info=task.exception(),
            extra={"action": "metrics_server_failed"},
        )
