"""`archiver-db doctor | status | verify` and `run` under systemd's notify protocol, as the real
CLI in a subprocess (the SIGTERM-under-load test lives in test_cli.py)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
import uuid
from collections.abc import Awaitable, Callable

from listener import settings
from tests import pg
from tests.conftest import World, wait_until

SETTING_NAMES = {name.upper() for name in settings.Settings.model_fields}


def env_for(world: World, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k.upper() not in SETTING_NAMES}
    return env | {
        "PYTHONPATH": str(pg.REPO),
        "WHATSAPP_DB_URL": world.bridge_url,
        "SYNAPSE_DB_URL": world.synapse_url,
        "ARCHIVE_DB_URL": world.archive_url,
        "MEDIA_STORE_PATH": str(world.media_store),
        "POLL_INTERVAL_MS": "200",
        "HEALTH_CHECK_INTERVAL_S": "0.2",
        "METRICS_ADDR": "127.0.0.1:0",
        "LOG_FORMAT": "json",
        **extra,
    }


async def cli(world: World, *args: str, **extra: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "listener", *args,
        env=env_for(world, **extra), cwd=pg.REPO,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_cli__doctor_exits_0_when_healthy_and_1_without_the_trigger(world: World) -> None:
    rc, out, _ = await cli(world, "doctor")
    assert rc == 0, out
    assert out.splitlines()[-1].startswith("all ")
    await world.bridge.execute("DROP TRIGGER archiver_db_message_insert ON message")
    rc, out, _ = await cli(world, "doctor")
    assert rc == 1
    assert "FAIL  bridge trigger:" in out
    assert out.splitlines()[-1].endswith("checks failed")


async def test_cli__verify_exits_1_on_a_gap_and_repair_closes_it(world: World) -> None:
    await world.sim.ensure_world(groups=1, dms=1)
    chat = world.sim.chats[0]
    sent = [await world.sim.send_text(chat, chat.members[0], f"r{i}") for i in range(4)]
    rc, out, err = await cli(world, "verify", "--json")
    assert rc == 1, err
    assert json.loads(out)["missing"] >= 4
    rc, out, err = await cli(world, "verify", "--repair")
    assert rc == 0, out + err
    assert out.splitlines()[-1].startswith("all ")
    await world.wait_archived({s.event_id for s in sent}, timeout_s=1)
    rc, out, _ = await cli(world, "status", "--json")
    assert rc == 0
    assert json.loads(out)["service"] == "never ran (no heartbeat)"


async def test_cli__run_under_systemd_notifies_ready_watchdog_stopping_and_exits_0(
    world: World,
) -> None:
    name = f"archiver-e2e-{uuid.uuid4().hex}"
    sink = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sink.bind("\0" + name)
    sink.setblocking(False)
    received: list[str] = []

    async def got(prefix: str) -> bool:
        with contextlib.suppress(BlockingIOError):
            while True:
                received.append(sink.recv(4096).decode())
        return any(m.startswith(prefix) for m in received)

    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "listener", "run",
        env=env_for(world, NOTIFY_SOCKET=f"@{name}", WATCHDOG_USEC="400000"), cwd=pg.REPO,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        await wait_until(lambda: got("READY=1"), timeout_s=15, what="READY=1")
        await wait_until(lambda: got("WATCHDOG=1"), timeout_s=5, what="WATCHDOG=1")
        # Its own (default) interval: a heartbeat younger than three of them means running.
        status_rc, status_out, _ = await cli(world, "status", "--json", HEALTH_CHECK_INTERVAL_S="5")
        proc.send_signal(signal.SIGTERM)
        # Keep reading, as systemd does: a full datagram queue would hold STOPPING back.
        drainer = asyncio.create_task(_drain_while(got, proc))
        _, err = await asyncio.wait_for(proc.communicate(), 30)
        await drainer
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await got("")
        sink.close()
    assert proc.returncode == 0, err.decode()
    keys = [m.split("\n", 1)[0] for m in received if not m.startswith("STATUS=")]
    assert keys[0] == "READY=1"
    assert keys[-1] == "STOPPING=1"
    assert status_rc == 0
    assert json.loads(status_out)["service"] == "running"
    actions = [json.loads(line).get("action") for line in err.decode().splitlines() if line]
    assert "metrics_server_listening" in actions
    assert "service_stopped" in actions


async def _drain_while(
    read: Callable[[str], Awaitable[bool]], proc: asyncio.subprocess.Process
) -> None:
    while proc.returncode is None:
        await read("")
        await asyncio.sleep(0.02)
