"""Operations on real PostgreSQL: /metrics, /healthz, /readyz, sd_notify, the heartbeat, the
least-privilege role from sql/grants.sql, `doctor`, `status` and `verify`.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

import listener
from listener import service
from listener.ops import doctor, doctor_facts, probes, status, verify
from tests import pg
from tests.conftest import World, psql_file, wait_until

FAST = {"metrics_addr": "127.0.0.1:0", "health_check_interval_s": 0.1}
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(svc: service.Service, path: str = "/metrics") -> httpx.Response:
    assert svc.http.port is not None, "metrics server not listening"
    async with httpx.AsyncClient(timeout=5.0) as client:
        return await client.get(f"http://127.0.0.1:{svc.http.port}{path}")


def samples(text: str) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def total(values: Samples, name: str, **labels: str) -> float:
    wanted = set(labels.items())
    return sum(v for (n, lbls), v in values.items() if n == name and wanted <= lbls)


async def set_connections(world_url: str, *, allowed: bool) -> None:
    name = world_url.rsplit("/", 1)[1]
    await pg.admin_execute(
        f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {"true" if allowed else "false"}'
    )
    if not allowed:
        await pg.admin_execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE datname = '{name}' AND pid <> pg_backend_pid()"
        )


# -- /metrics, /healthz, /readyz ------------------------------------------------------------------


async def test_metrics__scrape_during_archiving_shows_counters_and_histogram_moving(
    world: World,
) -> None:
    await world.sim.ensure_world(groups=1, dms=1)
    async with world.running(**FAST) as svc:
        await asyncio.wait_for(svc.listener.connected.wait(), 5)
        await svc.sweeper.sweep_once()
        before = samples((await scrape(svc)).text)
        group = next(c for c in world.sim.chats if c.room_type == "")
        sent = [await world.sim.send_text(group, group.members[0], f"m{i}") for i in range(5)]
        await world.wait_archived({s.event_id for s in sent})

        async def settled() -> bool:
            now = samples((await scrape(svc)).text)
            return total(now, "archiver_rowid_lag") == 0 and total(now, "archiver_ready") == 1

        await wait_until(settled, what="lag 0 and ready")
        response = await scrape(svc)
    after = samples(response.text)

    assert response.headers["content-type"].startswith("text/plain")

    def moved(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    archived = "archiver_messages_archived_total"
    assert moved(archived) == 5
    assert moved(archived, message_type="m.text") == 5
    assert moved("archiver_latency_seconds_count") == 5
    assert moved("archiver_latency_seconds_bucket", le="+Inf") == 5
    assert 0 < moved("archiver_latency_seconds_sum") < 5 * 10
    assert moved("archiver_notifications_total", result="queued") >= 1
    assert total(after, "archiver_queue_capacity") == 10_000
    assert total(after, "archiver_queue_depth") == 0
    assert total(after, "archiver_failures_pending") == 0
    assert total(after, "archiver_seconds_since_last_archived") < 60
    assert total(after, "archiver_build_info", version=listener.__version__) == 1
    assert total(after, "archiver_dependency_up", dependency="synapse") == 1
    assert ("archiver_media_items_total", frozenset({("status", "missing")})) in after


async def test_probes__healthz_alive_and_readyz_ready_as_json(world: World) -> None:
    await world.sim.ensure_world(groups=1, dms=0)
    async with world.running(**FAST) as svc:

        async def ready() -> bool:
            return (await scrape(svc, "/readyz")).status_code == 200

        await wait_until(ready, what="/readyz 200")
        live = await scrape(svc, "/healthz")
        body = (await scrape(svc, "/readyz")).json()
    assert live.status_code == 200
    assert live.json()["ok"] is True
    assert body["ok"] is True
    assert body["checks"] == dict.fromkeys(probes.DEPENDENCIES, True)


async def test_readiness__false_when_synapse_dies_and_true_when_it_returns(world: World) -> None:
    await world.sim.ensure_world(groups=1, dms=0)
    async with world.running(**FAST, health_check_timeout_s=1.0) as svc:

        async def readyz(expected: int) -> bool:
            return (await scrape(svc, "/readyz")).status_code == expected

        await wait_until(lambda: readyz(200), what="ready")
        await set_connections(world.synapse_url, allowed=False)
        try:
            await wait_until(lambda: readyz(503), what="not ready while Synapse is down")
            down = (await scrape(svc, "/readyz")).json()
            assert (await scrape(svc, "/healthz")).status_code == 200  # alive all the same
        finally:
            await set_connections(world.synapse_url, allowed=True)
        await wait_until(lambda: readyz(200), what="ready again after Synapse returns")
    assert down["failing"] == ["synapse"]
    assert svc.metrics.dependency_up.labels("synapse")._value.get() == 1


async def test_readiness__false_without_the_trigger(world: World) -> None:
    psql_file(world.bridge_url, pg.REPO / "sql" / "uninstall_triggers.sql")
    async with world.running(**FAST) as svc:
        await asyncio.wait_for(svc.listener.connected.wait(), 5)

        async def trigger_checked() -> bool:
            # The dependency probes run on their own timer: wait for them as well.
            probed = {"bridge", "synapse", "archive"} <= set(svc._dependencies)
            return svc.health.trigger_present is False and probed

        await wait_until(trigger_checked, what="trigger check")
        response = await scrape(svc, "/readyz")
    assert response.status_code == 503
    assert response.json()["failing"] == ["trigger"]


# -- systemd --------------------------------------------------------------------------------------


async def test_sdnotify__ready_then_watchdog_then_stopping_in_order(world: World) -> None:
    name = f"archiver-test-{uuid.uuid4().hex}"
    sink = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sink.bind("\0" + name)
    sink.setblocking(False)
    try:
        await world.sim.ensure_world(groups=1, dms=0)
        async with world.running(notify_socket=f"@{name}", watchdog_usec=200_000) as svc:
            assert svc.notifier.watchdog_interval_s == pytest.approx(0.1)
            await asyncio.wait_for(svc.listener.connected.wait(), 5)
            await asyncio.sleep(0.5)  # several watchdog intervals
        messages = []
        with contextlib.suppress(BlockingIOError):
            while True:
                messages.append(sink.recv(4096).decode())
    finally:
        sink.close()
    keys = [m.split("\n", 1)[0] for m in messages if not m.startswith("STATUS=")]
    assert keys[0] == "READY=1"
    assert keys[-1] == "STOPPING=1"
    assert keys.count("WATCHDOG=1") >= 2
    assert set(keys[1:-1]) == {"WATCHDOG=1"}


# -- heartbeat and status -------------------------------------------------------------------------


async def test_status__reads_the_heartbeat_cursor_failures_and_last_message_per_room(
    world: World,
) -> None:
    await world.sim.ensure_world(groups=2, dms=0)
    a, b = world.sim.chats[:2]
    sent = [await world.sim.send_text(chat, chat.members[0], "hi") for chat in (a, b, a)]
    async with world.running(**FAST):
        await world.wait_archived({s.event_id for s in sent})

        async def beat_has_cursor() -> bool:
            value = await world.archive.fetchval(
                "SELECT (value->>'cursor')::bigint FROM archiver_state WHERE name = 'heartbeat'"
            )
            return bool(value == max(s.rowid for s in sent))

        await wait_until(beat_has_cursor, what="heartbeat with the cursor")
        snap = await status.snapshot(world.archive)
    assert snap.cursor == max(s.rowid for s in sent)
    assert snap.heartbeat is not None
    assert snap.heartbeat["queue_capacity"] == 10_000
    assert snap.service_state(heartbeat_interval_s=5.0) == "running"
    last = {r["room_id"]: r["event_id"] for r in snap.rooms}
    assert set(last) == {a.room_id, b.room_id}
    assert last[a.room_id] in {sent[0].event_id, sent[2].event_id}  # 1 s timestamps may tie
    assert last[b.room_id] == sent[1].event_id
    text = status.render(snap, heartbeat_interval_s=5.0)
    assert f"rowid {snap.cursor}" in text
    assert a.room_id in text
    assert snap.as_json(heartbeat_interval_s=5.0)["failures_open"] == {}


# -- least privilege ------------------------------------------------------------------------------


@dataclass
class Role:
    name: str
    urls: dict[str, str]


def as_role(url: str, role: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"{role}@{parts.hostname}:{parts.port or 5432}"))


@pytest.fixture
async def archiver_role(world: World) -> AsyncIterator[Role]:
    """A role made by sql/grants.sql on all three databases, exactly as an operator would."""
    name = f"archiver_{uuid.uuid4().hex[:8]}"
    urls = {"bridge": world.bridge_url, "synapse": world.synapse_url, "archive": world.archive_url}
    grants = pg.REPO / "sql" / "grants.sql"
    for target, url in urls.items():
        psql_file(url, grants, f"target={target}", f"role={name}", "password=pw-not-logged")
    try:
        yield Role(name, {target: as_role(url, name) for target, url in urls.items()})
    finally:
        for url in urls.values():
            conn = await asyncpg.connect(url)
            try:
                await conn.execute(f'DROP OWNED BY "{name}"')
            finally:
                await conn.close()
        await pg.admin_execute(f'DROP ROLE IF EXISTS "{name}"')


def role_settings(role: Role) -> dict[str, str]:
    return {
        "whatsapp_db_url": role.urls["bridge"],
        "synapse_db_url": role.urls["synapse"],
        "archive_db_url": role.urls["archive"],
    }


async def test_grants__the_role_archives_end_to_end_and_reads_no_secrets(
    world: World, archiver_role: Role
) -> None:
    await world.sim.ensure_world(groups=1, dms=1)
    chat = world.sim.chats[0]
    async with world.running(**role_settings(archiver_role)) as svc:
        await asyncio.wait_for(svc.listener.connected.wait(), 5)
        sent = [await world.sim.send_text(chat, chat.members[0], f"x{i}") for i in range(3)]
        media = await world.sim.send_media(chat, chat.members[1], world.sim.random_media())
        await world.wait_archived({s.event_id for s in [*sent, media]})
        assert await svc.check_trigger() is True
    bridge = await asyncpg.connect(archiver_role.urls["bridge"])
    try:
        for statement in (
            'SELECT * FROM "user"',
            "SELECT * FROM user_login",
            "SELECT * FROM user_portal",
            "INSERT INTO ghost (bridge_id, id) VALUES ('', 'intruder')",
            "UPDATE message SET mxid = mxid",
            "DELETE FROM message",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await bridge.execute(statement)
    finally:
        await bridge.close()
    archive = await asyncpg.connect(archiver_role.urls["archive"])
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await archive.execute("DELETE FROM messages")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await archive.execute("CREATE TABLE sneaky (id int)")
    finally:
        await archive.close()


async def test_grants__rerun_is_idempotent_and_takes_back_extra_privileges(
    world: World, archiver_role: Role
) -> None:
    await world.bridge.execute(f'GRANT SELECT ON "user" TO "{archiver_role.name}"')
    psql_file(
        world.bridge_url,
        pg.REPO / "sql" / "grants.sql",
        "target=bridge",
        f"role={archiver_role.name}",
    )
    can_read = await world.bridge.fetchval(
        "SELECT has_table_privilege($1, 'public.user', 'SELECT')", archiver_role.name
    )
    assert can_read is False


# -- doctor ---------------------------------------------------------------------------------------


async def run_doctor(world: World, role: Role, **overrides: object) -> list[doctor.Result]:
    config = world.settings(**role_settings(role), **overrides)
    return await doctor_facts.diagnose(config, max_clock_skew_s=5.0)


def failures(results: list[doctor.Result]) -> list[str]:
    return [r.line() for r in results if r.level is doctor.Level.FAIL]


async def test_doctor__healthy_setup_passes(world: World, archiver_role: Role) -> None:
    await world.sim.ensure_world(groups=1, dms=0)
    chat = world.sim.chats[0]
    for _ in range(3):
        await world.sim.send_media(chat, chat.members[0], world.sim.random_media())
    results = await run_doctor(world, archiver_role)
    assert failures(results) == []
    assert doctor.passed(results)
    lines = "\n".join(r.line() for r in results)
    assert "OK    bridge trigger" in lines
    assert "OK    bridge least privilege" in lines
    assert "3 recent uploads readable" in lines
    assert all(r.level is not doctor.Level.WARN for r in results), lines


async def test_doctor__superuser_passes_with_a_warning(world: World) -> None:
    config = world.settings()
    results = await doctor_facts.diagnose(config, max_clock_skew_s=5.0)
    assert doctor.passed(results)
    warnings = [r.line() for r in results if r.level is doctor.Level.WARN]
    assert warnings == [
        "WARN  bridge least privilege: postgres is a superuser. "
        "Fix: run the archiver as the role sql/grants.sql creates"
    ]


async def test_doctor__no_trigger_fails_naming_the_install(
    world: World, archiver_role: Role
) -> None:
    psql_file(world.bridge_url, pg.REPO / "sql" / "uninstall_triggers.sql")
    lines = failures(await run_doctor(world, archiver_role))
    assert len(lines) == 1
    assert lines[0].startswith("FAIL  bridge trigger: no archiver-db NOTIFY trigger")
    assert "psql -d <bridge db> -f sql/triggers.sql" in lines[0]


async def test_doctor__disabled_trigger_fails_naming_the_enable(
    world: World, archiver_role: Role
) -> None:
    await world.bridge.execute("ALTER TABLE message DISABLE TRIGGER archiver_db_message_insert")
    lines = failures(await run_doctor(world, archiver_role))
    assert lines == [
        "FAIL  bridge trigger: archiver_db_message_insert on public.message is disabled (D). "
        "Fix: ALTER TABLE public.message ENABLE TRIGGER archiver_db_message_insert  "
        "(as the bridge database owner)"
    ]


async def test_doctor__wrong_channel_fails(world: World, archiver_role: Role) -> None:
    lines = failures(await run_doctor(world, archiver_role, notify_channel="other_channel"))
    assert len(lines) == 1
    assert "notifies channel 'archiver_db' but NOTIFY_CHANNEL is 'other_channel'" in lines[0]


async def test_doctor__missing_grant_fails_naming_it(world: World, archiver_role: Role) -> None:
    await world.bridge.execute(f'REVOKE SELECT ON portal FROM "{archiver_role.name}"')
    lines = failures(await run_doctor(world, archiver_role))
    assert lines == [
        f"FAIL  bridge grants: {archiver_role.name} lacks SELECT on portal. "
        f"Fix: psql -d <bridge db> -v target=bridge -v role={archiver_role.name} "
        "-f sql/grants.sql  (as the database owner)"
    ]


async def test_doctor__renamed_bridge_column_fails_naming_the_difference(
    world: World, archiver_role: Role
) -> None:
    await world.bridge.execute('ALTER TABLE message RENAME COLUMN "timestamp" TO ts')
    lines = failures(await run_doctor(world, archiver_role))
    assert len(lines) == 1
    assert lines[0].startswith(
        "FAIL  bridge schema message: column timestamp missing (unknown columns: ts; renamed?)"
    )


async def test_doctor__media_store_not_a_directory_fails(
    world: World, archiver_role: Role, tmp_path: Path
) -> None:
    not_a_dir = tmp_path / "media_store_file"
    not_a_dir.write_text("")
    lines = failures(await run_doctor(world, archiver_role, media_store_path=not_a_dir))
    assert lines == [
        f"FAIL  media store: {not_a_dir} is not a directory. "
        "Fix: set MEDIA_STORE_PATH to Synapse's media_store_path (homeserver.yaml)"
    ]


async def test_doctor__media_files_missing_from_the_store_fails(
    world: World, archiver_role: Role
) -> None:
    await world.sim.ensure_world(groups=1, dms=0)
    chat = world.sim.chats[0]
    await world.sim.send_media(chat, chat.members[0], world.sim.random_media())
    for path in (world.media_store / "local_content").rglob("*"):
        if path.is_file():
            path.unlink()
    lines = failures(await run_doctor(world, archiver_role))
    assert len(lines) == 1
    assert lines[0].startswith("FAIL  media store: 1 of 1 recent uploads missing (e.g. local_con")


async def test_doctor__unmigrated_archive_and_unreachable_database_fail(
    world: World, archiver_role: Role
) -> None:
    empty = await pg.create_database(pg.unique_name("t_empty"))
    try:
        urls = role_settings(archiver_role) | {
            "archive_db_url": as_role(empty, archiver_role.name),
            "synapse_db_url": "postgresql://nobody:topsecret@127.0.0.1:1/none",
        }
        config = world.settings(**urls)
        results = await doctor_facts.diagnose(config, max_clock_skew_s=5.0)
    finally:
        await pg.drop_database(empty.rsplit("/", 1)[1])
    lines = failures(results)
    assert any(line.startswith("FAIL  synapse connection: cannot connect") for line in lines)
    assert any(
        line.startswith("FAIL  archive schema: not migrated (pending: 0001") for line in lines
    )
    assert not any("topsecret" in r.line() for r in results)


# -- verify ---------------------------------------------------------------------------------------


async def test_verify__finds_a_message_deleted_from_the_archive_and_repair_restores_it(
    world: World,
) -> None:
    await world.sim.ensure_world(groups=2, dms=1)
    sent = []
    for i, chat in enumerate(world.sim.chats * 2):
        sent.append(await world.sim.send_text(chat, chat.members[0], f"v{i}"))
    async with world.running():
        await world.wait_archived({s.event_id for s in sent})
    lost = sent[4]
    await world.archive.execute("DELETE FROM messages WHERE event_id = $1", lost.event_id)

    report = await verify.compare(world.settings(), since=None, until=None)
    assert [m.event_id for m in report.missing] == [lost.event_id]
    room = next(r for r in report.rooms if r.missing)
    assert room.bridge - room.archived == 1
    assert f"missing: {lost.event_id}" in verify.render(report)

    svc = service.Service(world.settings(missing_event_timeout_s=1e-9))
    await svc.open()
    try:
        await svc.rearchive([m.rowid for m in report.missing])
    finally:
        await svc.close()
    after = await verify.compare(world.settings(), since=None, until=None)
    assert after.missing == []
    assert sum(r.archived for r in after.rooms) == sum(r.bridge for r in after.rooms)
    row = await world.archive.fetchrow(
        "SELECT body FROM messages WHERE event_id = $1", lost.event_id
    )
    assert row["body"] == "v4"


async def test_verify__time_range_limits_the_comparison(world: World) -> None:
    await world.sim.ensure_world(groups=1, dms=0)
    chat = world.sim.chats[0]
    sent = [await world.sim.send_text(chat, chat.members[0], f"t{i}") for i in range(3)]
    stamp = datetime.fromtimestamp(sent[0].timestamp_ns / 1e9, UTC)
    everything = await verify.compare(world.settings(), since=None, until=None)
    later = await verify.compare(world.settings(), since=stamp + timedelta(days=1), until=None)
    earlier = await verify.compare(world.settings(), since=None, until=stamp - timedelta(days=1))
    assert {m.event_id for m in everything.missing} >= {s.event_id for s in sent}
    assert later.missing == []
    assert earlier.missing == []


async def test_grants__e2ee_on_adds_the_megolm_sessions_and_nothing_else_of_crypto(
    world: World, archiver_role: Role
) -> None:
    bridge = await asyncpg.connect(archiver_role.urls["bridge"])
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await bridge.execute("SELECT 1 FROM crypto_megolm_inbound_session")
        psql_file(
            world.bridge_url,
            pg.REPO / "sql" / "grants.sql",
            "target=bridge",
            f"role={archiver_role.name}",
            "e2ee=on",
        )
        assert await bridge.fetchval("SELECT count(*) FROM crypto_megolm_inbound_session") == 0
        for table in ("crypto_account", "crypto_olm_session"):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await bridge.execute(f"SELECT 1 FROM {table}")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await bridge.execute("DELETE FROM crypto_megolm_inbound_session")
    finally:
        await bridge.close()
