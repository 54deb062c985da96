"""The /metrics, /healthz, /readyz server: routing (pure) and a real socket on port 0."""

from __future__ import annotations

import asyncio
import socket

import httpx
import pytest
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter

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
    ("method", "path", "status"),
    [
        ("GET", "/metrics", 200),
        ("GET", "/metrics?x=1", 200),
        ("HEAD", "/metrics", 200),
        ("GET", "/healthz", 200),
        ("GET", "/readyz", 503),
        ("GET", "/", 404),
        ("POST", "/metrics", 405),
    ],
)
def test_route(method: str, path: str, status: int) -> None:
    code, _, _ = metrics_server.route(
        method, path, registry=_registry(), live=lambda: LIVE, ready=lambda: NOT_READY
    )
    assert code == status


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


async def test_server__garbage_gets_400_and_the_server_keeps_serving() -> None:
    server = metrics_server.MetricsServer(
        "127.0.0.1:0", registry=_registry(), live=lambda: LIVE, ready=lambda: READY
    )
    await server.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"NONSENSE\r\n\r\n")
        answer = await reader.read()
        writer.close()
        await writer.wait_closed()
        async with httpx.AsyncClient(timeout=5) as client:
            after = await client.get(f"http://127.0.0.1:{server.port}/healthz")
    finally:
        await server.stop()
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert after.status_code == 200


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
