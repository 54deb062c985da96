"""The real ``archiver-db`` CLI as a subprocess: ``python -m listener <command>``.

Sources are the per-test ``World`` (bridge with the trigger installed by psql, the SQL-subset
Synapse, a migrated archive). Every database URL carries a password: local trust auth ignores it,
and every command's stdout and stderr are checked never to contain it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest

from listener import settings
from listener.schema import migrate
from tests import pg
from tests.conftest import World, wait_until

PASSWORD = "s3cretpw"
SETTING_NAMES = {name.upper() for name in settings.Settings.model_fields}
READ_CURSOR = "SELECT (value->>'rowid')::bigint FROM archiver_state WHERE name = 'bridge_cursor'"
NS = 1_000_000_000


def with_password(url: str) -> str:
    """``url`` with PASSWORD as its password (unless it already has one)."""
    parts = urlsplit(url)
    if parts.password:
        return url
    netloc = f"{parts.username or 'postgres'}:{PASSWORD}@{parts.hostname}:{parts.port or 5432}"
    return urlunsplit(parts._replace(netloc=netloc))


def secret_of(url: str) -> str:
    return urlsplit(url).password or PASSWORD


@dataclass
class Result:
    rc: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


@dataclass
class CliProcess:
    """A running ``archiver-db`` whose output is collected as it comes."""

    proc: asyncio.subprocess.Process
    stdout: list[str] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)
    pumps: list[asyncio.Task[None]] = field(default_factory=list)

    def log_entries(self) -> list[dict[str, object]]:
        entries = []
        for line in self.stderr:
            with contextlib.suppress(ValueError):
                entry = json.loads(line)
                if isinstance(entry, dict):
                    entries.append(entry)
        return entries

    async def wait_for_action(self, action: str, *, timeout_s: float = 15.0) -> None:
        async def logged() -> bool:
            if self.proc.returncode is not None:
                raise AssertionError(f"archiver-db exited early:\n{''.join(self.stderr)}")
            return any(e.get("action") == action for e in self.log_entries())

        await wait_until(logged, timeout_s=timeout_s, what=f"log action {action}")

    async def stop(self, *, sig: int = signal.SIGTERM, timeout_s: float = 30.0) -> Result:
        if self.proc.returncode is None:
            self.proc.send_signal(sig)
        return await self.wait(timeout_s=timeout_s)

    async def wait(self, *, timeout_s: float) -> Result:
        try:
            await asyncio.wait_for(self.proc.wait(), timeout_s)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
            raise AssertionError(
                f"archiver-db did not exit within {timeout_s} s:\n{''.join(self.stderr)}"
            ) from None
        await asyncio.gather(*self.pumps)
        assert self.proc.returncode is not None
        return Result(self.proc.returncode, "".join(self.stdout), "".join(self.stderr))


class Cli:
    """Starts ``python -m listener`` with a clean environment; checks every output for secrets."""

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd
        self.secrets: set[str] = {PASSWORD}
        self.started: list[CliProcess] = []

    def env(self, world: World | None, **overrides: str | None) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if k.upper() not in SETTING_NAMES}
        base["PYTHONPATH"] = str(pg.REPO)
        base["PYTHONUNBUFFERED"] = "1"
        values: dict[str, str | None] = {
            "POLL_INTERVAL_MS": "200",
            "LOG_FORMAT": "json",
            "LOG_LEVEL": "INFO",
            "MISSING_EVENT_TIMEOUT_S": "2",
            "MISSING_EVENT_RETRY_S": "0.1",
            "LISTENER_PROBE_INTERVAL_S": "1",
            "LISTENER_PROBE_TIMEOUT_S": "1",
            "RECONNECT_MAX_BACKOFF_S": "0.5",
            "SHUTDOWN_GRACE_S": "5",
            # Never the shared default port: parallel sessions would collide on it.
            "METRICS_ADDR": f"127.0.0.1:{_free_port()}",
        }
        if world is None:
            # Reachable (the maintenance DB) but never used: for start-up failures.
            reachable = with_password(pg.url_for("postgres"))
            values |= {
                "WHATSAPP_DB_URL": reachable,
                "SYNAPSE_DB_URL": reachable,
                "ARCHIVE_DB_URL": reachable,
            }
        else:
            values |= {
                "WHATSAPP_DB_URL": with_password(world.bridge_url),
                "SYNAPSE_DB_URL": with_password(world.synapse_url),
                "ARCHIVE_DB_URL": with_password(world.archive_url),
                "MEDIA_STORE_PATH": str(world.media_store),
            }
        values |= overrides
        for value in values.values():
            if value and value.startswith("postgres"):
                self.secrets.add(secret_of(value))
        base |= {k: v for k, v in values.items() if v is not None}
        return base

    async def start(self, env: dict[str, str], *args: str) -> CliProcess:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "listener",
            *args,
            env=env,
            cwd=self.cwd,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        running = CliProcess(proc)
        assert proc.stdout is not None
        assert proc.stderr is not None
        running.pumps = [
            asyncio.create_task(_pump(proc.stdout, running.stdout)),
            asyncio.create_task(_pump(proc.stderr, running.stderr)),
        ]
        self.started.append(running)
        return running

    async def run(self, env: dict[str, str], *args: str, timeout_s: float = 60.0) -> Result:
        return await (await self.start(env, *args)).wait(timeout_s=timeout_s)

    def assert_no_secrets(self) -> None:
        for running in self.started:
            text = "".join(running.stdout) + "".join(running.stderr)
            for secret in self.secrets:
                assert secret not in text, f"a password leaked into the output:\n{text}"

    async def kill_leftovers(self) -> None:
        for running in self.started:
            if running.proc.returncode is None:
                running.proc.kill()
                await running.proc.wait()
            for pump in running.pumps:
                pump.cancel()
            await asyncio.gather(*running.pumps, return_exceptions=True)


async def _pump(stream: asyncio.StreamReader, into: list[str]) -> None:
    while line := await stream.readline():
        into.append(line.decode(errors="replace"))


@pytest.fixture
async def cli(tmp_path: Path) -> AsyncIterator[Cli]:
    runner = Cli(tmp_path)  # not the checkout: no stray .env is read
    try:
        yield runner
    finally:
        await runner.kill_leftovers()
    runner.assert_no_secrets()


async def _count(world: World) -> int:
    return await world.archived_count()


async def _cursor(world: World) -> int | None:
    value = await world.archive.fetchval(READ_CURSOR)
    return int(value) if value is not None else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# -- migrate / triggers ------------------------------------------------------------------------


async def test_cli__migrate_creates_the_schema_then_says_up_to_date(cli: Cli, world: World) -> None:
    name = pg.unique_name("e2e_empty_archive")
    url = with_password(await pg.create_database(name))
    try:
        first = await cli.run(cli.env(world, ARCHIVE_DB_URL=url), "migrate")
        # The second run needs no settings at all with --db-url.
        bare = {k: v for k, v in cli.env(None).items() if not k.endswith("_DB_URL")}
        second = await cli.run(bare, "migrate", "--db-url", url)
        conn = await asyncpg.connect(url)
        try:
            tables = await conn.fetchval(
                "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tablename = ANY("
                "ARRAY['messages', 'archiver_state', 'archive_failures', 'monitored_rooms'])"
            )
            versions = await conn.fetchval("SELECT count(*) FROM archive_schema_migrations")
        finally:
            await conn.close()
    finally:
        await pg.drop_database(name)
    redacted = f"postgresql://postgres:***@127.0.0.1:5432/{name}"
    shipped = [path.stem for path in migrate.migration_files()]
    assert (first.rc, second.rc) == (0, 0), first.output + second.output
    assert first.stdout.strip() == f"applied {', '.join(shipped)} to {redacted}"
    assert second.stdout.strip() == f"{redacted} is up to date"
    assert tables == 4
    assert versions == len(shipped)


async def _triggers(world: World) -> dict[str, tuple[str, str]]:
    """Our triggers on any bridge table: name -> (enabled flag, channel argument)."""
    rows = await world.bridge.fetch(
        "SELECT t.tgname, t.tgenabled::text AS enabled, encode(t.tgargs, 'escape') AS args "
        "FROM pg_trigger t WHERE t.tgname LIKE 'archiver\\_db\\_%' AND NOT t.tgisinternal"
    )
    return {r["tgname"]: (r["enabled"], r["args"].split("\\000")[0]) for r in rows}


async def test_cli__uninstall_then_install_triggers_round_trip(cli: Cli, world: World) -> None:
    shipped = await _triggers(world)  # installed by psql from sql/triggers.sql
    assert shipped["archiver_db_message_insert"] == ("O", "archiver_db")
    assert set(shipped.values()) == {("O", "archiver_db")}

    removed = await cli.run(cli.env(world), "uninstall-triggers")
    after_remove = await _triggers(world)
    schema = await world.bridge.fetchval("SELECT to_regnamespace('archiver_db')::text")
    installed = await cli.run(cli.env(world, NOTIFY_CHANNEL="archive_test"), "install-triggers")
    again = await cli.run(cli.env(world, NOTIFY_CHANNEL="archive_test"), "install-triggers")

    assert (removed.rc, installed.rc, again.rc) == (0, 0, 0), removed.output + installed.output
    assert removed.stdout.startswith("trigger removed on postgresql://postgres:***@")
    assert after_remove == {}
    assert schema is None
    assert "(channel archive_test)" in installed.stdout
    assert await _triggers(world) == {name: ("O", "archive_test") for name in shipped}

    # The trigger the CLI installed really notifies.
    heard: asyncio.Queue[str] = asyncio.Queue()
    conn = await asyncpg.connect(world.bridge_url)
    try:
        await conn.add_listener("archive_test", lambda *args: heard.put_nowait(args[3]))
        await world.sim.ensure_world(groups=1, dms=0)
        sent = await world.sim.send_text(world.sim.chats[0], world.sim.contacts[0], "ping")
        note = json.loads(await asyncio.wait_for(heard.get(), 5))
    finally:
        await conn.close()
    assert note == {"v": 1, "table": "message", "op": "INSERT", "ranges": [[sent.rowid] * 2]}


async def test_cli__install_triggers_with_db_url_needs_no_other_settings_and_honours_channel(
    cli: Cli, world: World
) -> None:
    # The bridge owner's machine: no archiver settings but the channel.
    bare = {k: v for k, v in cli.env(None).items() if not k.endswith("_DB_URL")}
    env = bare | {"NOTIFY_CHANNEL": "archive_test"}
    result = await cli.run(env, "install-triggers", "--db-url", with_password(world.bridge_url))
    assert result.rc == 0, result.output
    assert "(channel archive_test)" in result.stdout
    channels = {channel for _, channel in (await _triggers(world)).values()}
    assert channels == {"archive_test"}


# -- run -----------------------------------------------------------------------------------------


async def test_cli__run_archives_a_message_sent_after_start_and_stops_on_sigterm(
    cli: Cli, world: World
) -> None:
    await world.sim.ensure_world(groups=1, dms=0)
    chat = world.sim.chats[0]
    running = await cli.start(cli.env(world), "run")
    await running.wait_for_action("listener_connected")
    sent = await world.sim.send_text(chat, chat.members[0], "hello via the CLI")
    await world.wait_archived({sent.event_id}, timeout_s=10)
    result = await running.stop(timeout_s=15)

    assert result.rc == 0, result.stderr
    row = await world.archive.fetchrow(
        "SELECT body, room_id, bridge_rowid FROM messages WHERE event_id = $1", sent.event_id
    )
    assert dict(row) == {
        "body": "hello via the CLI",
        "room_id": chat.room_id,
        "bridge_rowid": sent.rowid,
    }
    # LOG_FORMAT=json: every line on stderr is one JSON object.
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines
    assert all(isinstance(json.loads(line), dict) for line in lines)
    actions = [e.get("action") for e in running.log_entries()]
    assert "service_stopped" in actions
    assert await _cursor(world) == sent.rowid


async def test_cli__sigterm_mid_transaction_then_restart_loses_and_doubles_nothing(
    cli: Cli, world: World
) -> None:
    await world.sim.ensure_world(groups=1, dms=0)
    chat = world.sim.chats[0]
    # Small batches and a short drain grace, so SIGTERM lands while rows are still in flight.
    env = cli.env(world, WORKERS="2", BATCH_SIZE="5", SHUTDOWN_GRACE_S="0.2")
    first = await cli.start(env, "run")
    await first.wait_for_action("listener_connected")
    sent = await world.sim.insert_many_in_one_transaction(chat, 2_000)

    async def under_way() -> bool:
        return await _count(world) > 0

    await wait_until(under_way, timeout_s=15, what="archiving under way")
    stopped = await first.stop(timeout_s=30)
    partial = await _count(world)
    cursor_after_stop = await _cursor(world) or 0

    second = await cli.start(env, "run")

    async def complete() -> bool:
        return await _count(world) >= 2_000

    await wait_until(complete, timeout_s=60, what="all 2,000 rows archived after restart")
    await wait_until(
        lambda: _cursor_is(world, max(s.rowid for s in sent)), timeout_s=10, what="cursor saved"
    )
    restarted = await second.stop(timeout_s=30)

    assert (stopped.rc, restarted.rc) == (0, 0), stopped.stderr + restarted.stderr
    assert 0 < partial < 2_000, f"SIGTERM should have landed mid-transaction ({partial})"
    counts = await world.archive.fetchrow(
        "SELECT count(*) AS n, count(DISTINCT event_id) AS events, "
        "count(DISTINCT bridge_rowid) AS rowids FROM messages"
    )
    assert dict(counts) == {"n": 2_000, "events": 2_000, "rowids": 2_000}
    assert await world.archived_ids() == {s.event_id for s in sent}
    # The first run's saved cursor never claimed a row it had not archived.
    archived_below = await world.archive.fetchval(
        "SELECT count(*) FROM messages WHERE bridge_rowid <= $1", cursor_after_stop
    )
    assert archived_below == cursor_after_stop


async def _cursor_is(world: World, rowid: int) -> bool:
    return await _cursor(world) == rowid


async def test_cli__run_serves_prometheus_metrics_and_health_on_metrics_addr(
    cli: Cli, world: World
) -> None:
    await world.sim.ensure_world(groups=1, dms=0)
    chat = world.sim.chats[0]
    port = _free_port()
    running = await cli.start(cli.env(world, METRICS_ADDR=f"127.0.0.1:{port}"), "run")
    try:
        await running.wait_for_action("listener_connected")
        sent = await world.sim.send_text(chat, chat.members[0], "counted")
        await world.wait_archived({sent.event_id})
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=2.0) as client:

            async def counted() -> bool:
                with contextlib.suppress(httpx.TransportError):
                    text = (await client.get("/metrics")).text
                    return "archiver_messages_archived_total{" in text
                return False

            await wait_until(counted, timeout_s=5, what="/metrics counting the message")
            metrics_text = (await client.get("/metrics")).text
            health = await client.get("/healthz")
    finally:
        stopped = await running.stop(timeout_s=15)
    assert stopped.rc == 0, stopped.stderr
    assert "archiver_listener_connected 1.0" in metrics_text
    assert health.status_code == 200
    assert PASSWORD not in metrics_text + health.text


# -- backfill ------------------------------------------------------------------------------------


async def test_cli__backfill_archives_all_history_then_exits_with_a_count(
    cli: Cli, world: World
) -> None:
    await world.sim.ensure_world(groups=1, dms=1)
    group, dm = world.sim.chats[:2]
    old = await world.sim.history_sync(group, 30, start_ts_ns=1_600_000_000 * NS)
    live = [await world.sim.send_text(dm, dm.members[0], f"live {i}") for i in range(10)]
    total = len(old) + len(live)

    result = await cli.run(cli.env(world), "backfill", "--batch-size", "7")

    assert result.rc == 0, result.stderr
    assert result.stderr.rstrip().splitlines()[-1] == f"backfill done: {total} rows processed"
    assert f"{total}/{total} rows" in result.stderr
    assert await world.archived_ids() == {s.event_id for s in [*old, *live]}
    assert await _cursor(world) == max(s.rowid for s in [*old, *live])


async def test_cli__backfill_since_archives_only_newer_and_keeps_the_cursor(
    cli: Cli, world: World
) -> None:
    await world.sim.ensure_world(groups=1, dms=0)
    chat = world.sim.chats[0]
    old = await world.sim.history_sync(chat, 12, start_ts_ns=1_600_000_000 * NS)
    new = [await world.sim.send_text(chat, chat.members[0], f"new {i}") for i in range(5)]
    # Where an earlier run had got to: half-way through the history.
    await world.archive.execute(
        "INSERT INTO archiver_state (name, value) "
        "VALUES ('bridge_cursor', jsonb_build_object('rowid', $1::bigint))",
        old[5].rowid,
    )
    state_before = await world.archive.fetch("SELECT name, value FROM archiver_state")

    result = await cli.run(cli.env(world), "backfill", "--since", "2024-01-01")

    assert result.rc == 0, result.stderr
    assert result.stderr.rstrip().splitlines()[-1] == "backfill done: 5 rows processed"
    assert await world.archived_ids() == {s.event_id for s in new}
    assert not {s.event_id for s in old} & await world.archived_ids()
    assert await world.archive.fetch("SELECT name, value FROM archiver_state") == state_before
    assert await _cursor(world) == old[5].rowid


# -- bad settings and unreachable databases ----------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "setting"),
    [
        ({"WHATSAPP_DB_URL": None}, "WHATSAPP_DB_URL"),
        ({"BATCH_SIZE": "abc"}, "BATCH_SIZE"),
        ({"POLL_INTERVAL_MS": "0"}, "POLL_INTERVAL_MS"),
        ({"SYNAPSE_DB_URL": f"mysql://postgres:{PASSWORD}@127.0.0.1:5432/x"}, "SYNAPSE_DB_URL"),
        ({"NOTIFY_CHANNEL": f"Bad-{PASSWORD}"}, "NOTIFY_CHANNEL"),
    ],
    ids=["missing-url", "batch-size-not-int", "poll-out-of-range", "non-postgres-url", "channel"],
)
@pytest.mark.parametrize("command", ["run", "backfill"])
async def test_cli__bad_setting_exits_2_with_one_line_naming_it(
    cli: Cli, overrides: dict[str, str | None], setting: str, command: str
) -> None:
    result = await cli.run(cli.env(None, **overrides), command, timeout_s=20)
    assert result.rc == 2, result.output
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("archiver-db: invalid settings:")
    assert setting in lines[0]
    assert PASSWORD not in result.stderr


async def test_cli__malformed_port_in_url_exits_2_naming_the_setting(cli: Cli) -> None:
    url = f"postgresql://postgres:{PASSWORD}@127.0.0.1:notaport/bridge"
    result = await cli.run(cli.env(None, WHATSAPP_DB_URL=url), "run", timeout_s=20)
    assert PASSWORD not in result.output
    assert result.rc == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "WHATSAPP_DB_URL" in lines[0]


@pytest.mark.parametrize(
    ("setting", "database"),
    [("WHATSAPP_DB_URL", "bridge"), ("SYNAPSE_DB_URL", "synapse"), ("ARCHIVE_DB_URL", "archive")],
)
async def test_cli__run_waits_for_an_unreachable_database_naming_host_not_password(
    cli: Cli, setting: str, database: str
) -> None:
    """``run`` is a service: a database down at start-up is waited for (the process stays up,
    systemd is told what it waits for), and SIGTERM while waiting is a clean stop."""
    url = f"postgresql://postgres:{PASSWORD}@127.0.0.1:1/unreachable"
    running = await cli.start(cli.env(None, **{setting: url}), "run")
    await running.wait_for_action("startup_waiting")
    await asyncio.sleep(1.0)  # several refused attempts later: still up
    assert running.proc.returncode is None
    result = await running.stop()
    assert result.rc == 0, result.output
    waits = [e for e in running.log_entries() if e.get("action") == "startup_waiting"]
    assert len(waits) == 1  # further attempts are logged at most every 30 s
    assert {e.get("dependency") for e in waits} == {database}
    assert "postgres:***@127.0.0.1:1/" in str(waits[0].get("msg"))
    assert PASSWORD not in result.output
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("setting", ["WHATSAPP_DB_URL", "SYNAPSE_DB_URL", "ARCHIVE_DB_URL"])
async def test_cli__backfill_fails_at_start_on_an_unreachable_database_naming_host_not_password(
    cli: Cli, setting: str
) -> None:
    url = f"postgresql://postgres:{PASSWORD}@127.0.0.1:1/unreachable"
    began = time.monotonic()
    result = await cli.run(cli.env(None, **{setting: url}), "backfill", timeout_s=30)
    assert result.rc == 1, result.output
    assert time.monotonic() - began < 20
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("archiver-db: cannot connect to postgresql://postgres:***@127.0.0.1:1/")
    assert "Connection refused" in last or "ConnectionRefused" in last
    assert PASSWORD not in result.output
    assert "Traceback" not in result.stderr


async def test_cli__password_never_in_output_of_run_backfill_migrate_even_at_debug(
    cli: Cli, world: World
) -> None:
    await world.sim.ensure_world(groups=1, dms=0)
    chat = world.sim.chats[0]
    env = cli.env(world, LOG_LEVEL="DEBUG")
    history = await world.sim.history_sync(chat, 5, start_ts_ns=1_600_000_000 * NS)
    backfilled = await cli.run(env, "backfill")
    migrated = await cli.run(env, "migrate")

    running = await cli.start(env, "run")
    await running.wait_for_action("listener_connected")
    # Lose the listener's connection, so reconnect errors are logged too.
    await world.bridge.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE application_name = 'archiver-db:listener' AND datname = current_database()"
    )
    await running.wait_for_action("listener_disconnected")
    sent = await world.sim.send_text(chat, chat.members[0], "after the reconnect")
    await world.wait_archived({sent.event_id, *(s.event_id for s in history)})
    stopped = await running.stop(timeout_s=15)

    assert (backfilled.rc, migrated.rc, stopped.rc) == (0, 0, 0)
    assert "up to date" in migrated.stdout
    assert any(e.get("level") == "debug" for e in running.log_entries())
    assert "postgres:***@" in migrated.stdout
    for result in (backfilled, migrated, stopped):
        assert PASSWORD not in result.output


# -- retry-failures ------------------------------------------------------------------------------


async def test_cli__retry_failures_resolves_missing_event_once_it_appears(
    cli: Cli, world: World
) -> None:
    await world.sim.ensure_world(groups=1, dms=0)
    chat = world.sim.chats[0]
    sent = await world.sim.send_text(chat, chat.members[0], "late to Synapse")
    event_json = await world.synapse.fetchrow(
        "SELECT * FROM event_json WHERE event_id = $1", sent.event_id
    )
    await world.synapse.execute("DELETE FROM event_json WHERE event_id = $1", sent.event_id)
    env = cli.env(world, MISSING_EVENT_TIMEOUT_S="0.3")

    backfilled = await cli.run(env, "backfill")
    recorded = await _open_failures(world)
    archived_before = await world.archived_ids()
    still_missing = await cli.run(env, "retry-failures")
    await world.synapse.execute(
        "INSERT INTO event_json (event_id, room_id, internal_metadata, json, format_version) "
        "VALUES ($1, $2, $3, $4, $5)",
        *(event_json[k] for k in ("event_id", "room_id", "internal_metadata", "json")),
        event_json["format_version"],
    )
    resolved = await cli.run(env, "retry-failures")

    assert backfilled.rc == 0, backfilled.stderr
    assert recorded == [("missing_event", sent.event_id, sent.rowid)]
    assert sent.event_id not in archived_before
    assert still_missing.rc == 1
    assert still_missing.stdout.strip() == "retried 1 failures; 1 still open"
    assert resolved.rc == 0, resolved.stderr
    assert resolved.stdout.strip() == "retried 1 failures; 0 still open"
    assert await _open_failures(world) == []
    body = await world.archive.fetchval(
        "SELECT body FROM messages WHERE event_id = $1", sent.event_id
    )
    assert body == "late to Synapse"
    resolved_at = await world.archive.fetchval(
        "SELECT resolved_at FROM archive_failures WHERE subject = $1", sent.event_id
    )
    assert resolved_at is not None


async def _open_failures(world: World) -> list[tuple[str, str, int]]:
    rows = await world.archive.fetch(
        "SELECT kind, event_id, bridge_rowid FROM archive_failures WHERE resolved_at IS NULL"
    )
    return [(r["kind"], r["event_id"], r["bridge_rowid"]) for r in rows]
