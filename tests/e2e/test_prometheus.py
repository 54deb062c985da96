"""The real consumer of ``/metrics``: Debian's Prometheus scrapes ``archiver-db run`` (the CLI as
a subprocess) with the shipped alert rules loaded, and what it stores matches the archive."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import IO

import httpx

from tests import needs, pg
from tests.conftest import World, wait_until
from tests.e2e.test_operations_cli import env_for
from tests.prometheus_server import JOB, PrometheusServer
from tests.synapse_server import free_port

ALERTS = pg.REPO / "deploy" / "prometheus-alerts.yml"
# Labelled as the pipeline labels archiver_messages_archived_total (no type: "unknown").
HELD = (
    "SELECT coalesce(nullif(room_type, ''), 'unknown') AS room_type,"
    " coalesce(nullif(message_type, ''), 'unknown') AS message_type, count(*) AS n"
    " FROM messages GROUP BY 1, 2"
)
ARCHIVED = f'sum by (room_type, message_type) (archiver_messages_archived_total{{job="{JOB}"}})'
UP = f'up{{job="{JOB}"}}'


async def test_prometheus__scrapes_up_and_the_archived_messages_the_archive_holds(
    world: World, tmp_path: Path
) -> None:
    binary = needs.program("prometheus", package="prometheus")
    await world.sim.ensure_world(groups=1, dms=1)
    group, dm = world.sim.chats[:2]
    # Rows from before the start (the first sweep catches up) and while it runs (NOTIFY).
    sent = [await world.sim.send_text(group, group.members[i % 3], f"old {i}") for i in range(3)]
    sent.append(await world.sim.send_text(dm, dm.members[0], "old dm"))
    port = free_port()
    log = tmp_path / "archiver.log"
    async with PrometheusServer(
        binary, tmp_path, target=f"127.0.0.1:{port}", rule_files=[ALERTS]
    ) as prometheus:
        with log.open("wb") as stderr:
            archiver = await _start_archiver(world, port, stderr)
        try:
            await wait_until(lambda: _ready(port), timeout_s=30, what="archiver /readyz")
            sent += [await world.sim.send_text(group, group.members[0], f"new {i}") for i in (1, 2)]
            sent.append(await world.sim.send_text(dm, dm.members[0], "new dm"))
            await world.wait_archived({s.event_id for s in sent})
            held = {
                (r["room_type"], r["message_type"]): r["n"] for r in await world.archive.fetch(HELD)
            }
            await wait_until(_is(lambda: prometheus.value(UP), 1.0), timeout_s=30, what="up == 1")
            await _wait_scraped(prometheus, held)
            ready = await prometheus.value(f'archiver_ready{{job="{JOB}"}}')
            # The shipped alert, evaluated by Prometheus on the scraped series: quiet while the
            # archiver is scraped, pending (its 2 min "for" not over yet) once it is gone.
            down = lambda: prometheus.rule_state("ArchiverDown")  # noqa: E731
            await wait_until(_is(down, "inactive"), timeout_s=15, what="ArchiverDown inactive")
            rules = await prometheus.rules()
            archiver.send_signal(signal.SIGTERM)
            rc = await asyncio.wait_for(archiver.wait(), 30)
            await wait_until(_is(lambda: prometheus.value(UP), 0.0), timeout_s=15, what="up == 0")
            await wait_until(_is(down, "pending"), timeout_s=15, what="ArchiverDown pending")
        finally:
            if archiver.returncode is None:
                archiver.kill()
                await archiver.wait()
    assert rc == 0, log.read_text()
    assert sum(held.values()) == len(sent)
    assert ready == 1.0
    assert len(rules) == ALERTS.read_text().count("- alert:")
    assert {r["health"] for r in rules} == {"ok"}, [(r["name"], r.get("lastError")) for r in rules]


async def _wait_scraped(prometheus: PrometheusServer, held: dict[tuple[str, str], int]) -> None:
    seen: dict[tuple[str, ...], float] = {}

    async def as_held() -> bool:
        seen.clear()
        seen.update(await prometheus.values_by(ARCHIVED, "room_type", "message_type"))
        return seen == held

    try:
        await wait_until(as_held, timeout_s=30, what=f"Prometheus to hold {held}")
    except AssertionError as exc:
        # Which path wrote more than once: the sweep, or the reconciliation pass.
        paths = {
            name: await prometheus.value(f'archiver_{name}_total{{job="{JOB}"}}')
            for name in ("sweep_recovered_rows", "reconcile_recovered_messages")
        }
        raise AssertionError(f"{exc}: it holds {seen}; {paths}") from None


async def _start_archiver(world: World, port: int, stderr: IO[bytes]) -> asyncio.subprocess.Process:
    # The counter counts writes. Were the start slower than RECONCILE_GRACE_S after the first
    # rows were sent (a loaded machine), the reconciliation pass could write a message the first
    # sweep is writing too (idempotent, by design) and it would count twice.
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "listener", "run",
        env=env_for(world, METRICS_ADDR=f"127.0.0.1:{port}", RECONCILE_GRACE_S="3600"),
        cwd=pg.REPO,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=stderr,
    )  # fmt: skip


async def _ready(port: int) -> bool:
    try:
        async with httpx.AsyncClient(timeout=2) as client:
            return (await client.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200
    except httpx.TransportError:
        return False


def _is(read: Callable[[], Awaitable[object]], expected: object) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return bool(await read() == expected)

    return check
