"""The /metrics, /healthz, /readyz server: routing (in process) and a real socket on port 0."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator

import httpx
import pytest
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter
from starlette.testclient import TestClient

from listener.core import errors
from listener.ops import metrics_server, probes

READY = probes.readiness(dict.fromkeys(probes.DEPENDENCIES, True))
NOT_READY = probes.readiness({"listener": True})
LIVE = probes.liveness(stopping=False, crashed=False, workers_alive=True, uptime_s=1)


@pytest.mark.parametrize(
    ("addr", "expected"),
    [
        ("127.0.0.1:9464", ("127.0.0.1", 9464)),
        ("0.0.0.0:9100", ("0.0.0.0", 9100)),
        ("[::1]:9464", ("::1", 9464)),
        ("localhost:0", ("localhost", 0)),
        ("off", None),
        ("", None),
    ],
)
def test_parse_addr(addr: str, expected: tuple[str, int] | None) -> None:
    assert metrics_server.parse_addr(addr) == expected


@pytest.mark.parametrize("addr", ["9464", ":9464", "host:", "host:port", "host:70000"])
def test_parse_addr__rejects_malformed(addr: str) -> None:
    with pytest.raises(errors.ConfigError, match="METRICS_ADDR"):
        metrics_server.parse_addr(addr)


def _registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    Counter("demo_things", "Things.", registry=registry).inc(3)
    return registry


@pytest.mark.parametrize(
    ("method", "path", "status", "body"),
    [
        ("GET", "/metrics", 200, "demo_things_total 3.0"),
        ("GET", "/metrics?x=1", 200, "demo_things_total 3.0"),
        ("HEAD", "/metrics", 200, ""),
        ("GET", "/healthz", 200, '"ok": true'),
        ("GET", "/readyz", 503, '"failing": ["archive", "bridge", "synapse", "trigger"]'),
        ("GET", "/", 404, "try /metrics, /healthz, /readyz"),
        ("POST", "/metrics", 405, "GET only"),
        ("DELETE", "/healthz", 405, "GET only"),
    ],
)
def test_app__routes(method: str, path: str, status: int, body: str) -> None:
    app = metrics_server.app(registry=_registry(), live=lambda: LIVE, ready=lambda: NOT_READY)
    response = TestClient(app).request(method, path, follow_redirects=False)
    assert response.status_code == status
    assert body in response.text
    assert response.headers["cache-control"] == "no-store"
    if status == 405:
        assert set(response.headers["allow"].split(", ")) == {"GET", "HEAD"}


async def test_server__serves_metrics_and_json_probes_on_an_ephemeral_port() -> None:
    state = {"ready": NOT_READY}
    server = metrics_server.MetricsServer(
        "127.0.0.1:0", registry=_registry(), live=lambda: LIVE, ready=lambda: state["ready"]
    )
    assert await server.start()
    base = f"http://127.0.0.1:{server.port}"
    try:
        async with httpx.AsyncClient(timeout=5) as client:
            scraped = await client.get(f"{base}/metrics")
            not_ready = await client.get(f"{base}/readyz")
            state["ready"] = READY
            ready = await client.get(f"{base}/readyz")
            head = await client.head(f"{base}/metrics")
    finally:
        await server.stop()
    assert scraped.status_code == 200
    assert "demo_things_total 3.0" in scraped.text
    assert scraped.headers["content-type"] == CONTENT_TYPE_LATEST
    assert not_ready.status_code == 503
    assert not_ready.json()["failing"] == ["archive", "bridge", "synapse", "trigger"]
    assert ready.status_code == 200
    assert ready.headers["content-type"] == "application/json"
    assert head.content == b""
    assert int(head.headers["content-length"]) == len(scraped.content)


@contextlib.asynccontextmanager
async def _serving(*, request_timeout_s: int = 5) -> AsyncIterator[metrics_server.MetricsServer]:
    server = metrics_server.MetricsServer(
        "127.0.0.1:0",
        registry=_registry(),
        live=lambda: LIVE,
        ready=lambda: READY,
        request_timeout_s=request_timeout_s,
    )
    assert await server.start()
    try:
        yield server
    finally:
        await server.stop()


@contextlib.asynccontextmanager
async def _raw(
    port: int | None,
) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


@pytest.mark.parametrize(
    "request_bytes",
    [b"NONSENSE\r\n\r\n", b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 10_000 + b"\r\n\r\n"],
    ids=["garbage", "oversized-head"],
)
async def test_server__a_bad_request_gets_400_and_the_server_keeps_serving(
    request_bytes: bytes,
) -> None:
    async with _serving() as server:
        async with _raw(server.port) as (reader, writer):
            writer.write(request_bytes)
            answer = await asyncio.wait_for(reader.read(), 5)
        async with httpx.AsyncClient(timeout=5) as client:
            after = await client.get(f"http://127.0.0.1:{server.port}/healthz")
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert after.status_code == 200


async def test_server__a_slow_loris_is_cut_off_at_the_deadline_while_others_are_served() -> None:
    loop = asyncio.get_running_loop()
    async with _serving(request_timeout_s=1) as server, _raw(server.port) as (reader, writer):
        started = loop.time()
        dribbler = asyncio.create_task(_dribble(writer, every_s=0.2, times=50))
        try:
            async with httpx.AsyncClient(timeout=5) as client:
                meanwhile = await client.get(f"http://127.0.0.1:{server.port}/metrics")
            answer = await asyncio.wait_for(reader.read(), 5)
            held_s = loop.time() - started
        finally:
            dribbler.cancel()
            await asyncio.gather(dribbler, return_exceptions=True)
    assert meanwhile.status_code == 200
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert 0.9 <= held_s < 3, held_s


async def test_server__a_silent_connection_is_closed_at_the_deadline() -> None:
    async with _serving(request_timeout_s=1) as server, _raw(server.port) as (reader, _):
        answer = await asyncio.wait_for(reader.read(), 5)
    assert answer.startswith(b"HTTP/1.1 408 ")


async def test_server__an_idle_keep_alive_connection_is_closed_quietly() -> None:
    async with _serving(request_timeout_s=1) as server, _raw(server.port) as (reader, writer):
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = await asyncio.wait_for(reader.read(), 5)
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert answer.endswith(b"}\n")
    assert b"408" not in answer


async def test_server__stop_closes_a_half_sent_request_without_waiting_for_it() -> None:
    loop = asyncio.get_running_loop()
    async with _serving() as server, _raw(server.port) as (reader, writer):
        writer.write(b"GET /metrics HTTP/1.1\r\nX-Half: ")
        await writer.drain()
        started = loop.time()
        await server.stop()
        stop_s = loop.time() - started
        answer = await asyncio.wait_for(reader.read(), 5)
    assert stop_s < 2, stop_s
    assert answer == b""  # closed, not answered


async def _dribble(writer: asyncio.StreamWriter, *, every_s: float, times: int) -> None:
    """A request head that never ends: one header line at a time (a slow loris)."""
    writer.write(b"GET /metrics HTTP/1.1\r\n")
    for i in range(times):
        await asyncio.sleep(every_s)
        if writer.is_closing():
            return
        writer.write(b"X-Slow-%d: 1\r\n" % i)


async def test_server__a_busy_port_is_logged_not_fatal(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        server = metrics_server.MetricsServer(
            f"127.0.0.1:{port}", registry=_registry(), live=lambda: LIVE, ready=lambda: READY
        )
        assert await server.start() is False
    assert any(getattr(r, "action", "") == "metrics_server_failed" for r in caplog.records)
    await server.stop()


async def test_server__off_does_not_listen() -> None:
    server = metrics_server.MetricsServer(
        "off", registry=_registry(), live=lambda: LIVE, ready=lambda: READY
    )
    assert await server.start() is False
    assert server.port is None
