"""The chaos soak: the real archiver under random faults for a long time, then an independent
reconciliation that must find nothing lost, nothing doubled and every byte right.

The archiver runs as ``python -m listener run`` (PostgreSQL sink, media on), connected to its
three databases through TCP proxies that can black-hole or refuse connections. The bridge
simulator sends a steady realistic mix (texts, replies, media, Matrix users' messages) plus
edits, reactions and revokes of recent messages, a 1,000-row history-sync burst now and then and
two transactions committing out of rowid order. A seeded scheduler injects, at random intervals,
one of ``FAULTS``. At the end the traffic stops, everything is restored, the archiver settles,
``archiver-db verify`` must report nothing missing, and this script checks on its own, against
the bridge, Synapse and the media store (not through the archiver's code), that every row is
archived exactly once with Synapse's content, every edit, reaction and deletion is recorded and
every stored media file is byte-exact.

    python -m bench.soak --minutes 30 [--seed N] [--rate 100]

The shared PostgreSQL server is never restarted (a cluster restart needs a cluster the run owns;
not done here). ``tests/e2e/test_soak.py`` runs a 60-second version with a fixed seed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import hashlib
import json
import os
import random
import signal
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import psutil

from bench import common
from listener.sim import bridge as simulator
from listener.sim import synapse_writer, tcp_proxy

LISTENER_APP = b"archiver-db:listener"
FAULTS = (
    "listener_terminated",
    "backends_terminated",
    "listener_black_holed",
    "synapse_away",
    "archive_away",
    "sigkill",
    "sigterm",
    "burst",
    "out_of_order",
    "trigger_reinstalled",
    "late_media",
)


@dataclasses.dataclass
class Fault:
    kind: str
    started: float  # wall clock (time.time), comparable with commit times
    ended: float = 0.0


@dataclasses.dataclass
class Soak:
    """Everything one run needs and records."""

    args: argparse.Namespace
    urls: dict[str, str]
    proxies: dict[str, tcp_proxy.TcpProxy]
    media_store: Path
    media_archive: Path
    sim: simulator.BridgeSimulator
    bridge: asyncpg.Pool
    rng: random.Random
    archiver: Archiver
    sent: list[simulator.SentMessage] = dataclasses.field(default_factory=list)
    edits: dict[str, str] = dataclasses.field(default_factory=dict)  # edit id -> message id
    reactions: dict[str, str] = dataclasses.field(default_factory=dict)
    revoked: set[str] = dataclasses.field(default_factory=set)
    faults: list[Fault] = dataclasses.field(default_factory=list)
    late_files: list[tuple[Path, bytes]] = dataclasses.field(default_factory=list)


class Archiver:
    """The archiver process: started, killed and restarted on purpose; any other exit counts."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env = env
        self.log = log
        self.proc: asyncio.subprocess.Process | None = None
        self.unexpected_exits: list[int] = []
        self.peak_rss = 0
        self._expected = False
        self._watch: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._expected = False
        with self.log.open("ab") as log:
            self.proc = await common.start_archiver(self.env, stderr=log)
        self._watch = asyncio.create_task(self._watch_exit(self.proc))

    async def _watch_exit(self, proc: asyncio.subprocess.Process) -> None:
        code = await proc.wait()
        if not self._expected:
            self.unexpected_exits.append(code)
            await asyncio.sleep(1.0)  # as systemd's RestartSec would
            await self.start()

    def sample_rss(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(psutil.Error):
                rss = psutil.Process(self.proc.pid).memory_info().rss
                self.peak_rss = max(self.peak_rss, rss)

    async def stop(self, sig: int = signal.SIGTERM) -> int | None:
        """Stop on purpose; the exit code (expected 0 after SIGTERM)."""
        assert self.proc is not None
        self._expected = True
        if self._watch is not None:
            self._watch.cancel()
        if self.proc.returncode is None:
            self.proc.send_signal(sig)
        return await asyncio.wait_for(self.proc.wait(), 60)


# -- faults ------------------------------------------------------------------------------------


async def _terminate(url: str, application_like: str) -> int:
    conn = await asyncpg.connect(common.ADMIN_URL)
    try:
        killed: int = await conn.fetchval(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = $1 AND application_name LIKE $2) t",
            url.rsplit("/", 1)[1],
            application_like,
        )
        return killed
    finally:
        await conn.close()


def _hold_s(soak: Soak) -> float:
    """How long a database stays away: 5-30 s in a long run, scaled down in a short one."""
    scale = min(1.0, soak.args.minutes / 10)
    return soak.rng.uniform(5.0, 30.0) * max(scale, 0.1)


async def fault_listener_terminated(soak: Soak) -> None:
    await _terminate(soak.urls["bridge"], "archiver-db:listener")


async def fault_backends_terminated(soak: Soak) -> None:
    await _terminate(soak.urls[soak.rng.choice(("bridge", "synapse", "archive"))], "archiver-db%")


async def fault_listener_black_holed(soak: Soak) -> None:
    soak.proxies["bridge"].black_hole(LISTENER_APP)
    await asyncio.sleep(6.0)  # the listener notices within 5 s and reconnects through the proxy


async def _away(soak: Soak, name: str) -> None:
    await soak.proxies[name].stop()
    try:
        await asyncio.sleep(_hold_s(soak))
    finally:
        await soak.proxies[name].start()


async def fault_synapse_away(soak: Soak) -> None:
    await _away(soak, "synapse")


async def fault_archive_away(soak: Soak) -> None:
    await _away(soak, "archive")


async def fault_sigkill(soak: Soak) -> None:
    await soak.archiver.stop(signal.SIGKILL)
    await soak.archiver.start()


async def fault_sigterm(soak: Soak) -> None:
    code = await soak.archiver.stop(signal.SIGTERM)
    if code != 0:
        soak.archiver.unexpected_exits.append(code if code is not None else -1)
    await soak.archiver.start()


async def fault_burst(soak: Soak) -> None:
    chat = soak.rng.choice(soak.sim.chats)
    soak.sent += await soak.sim.insert_many_in_one_transaction(chat, 1000)


async def fault_out_of_order(soak: Soak) -> None:
    """Two transactions; the one with the lower rowid commits last."""
    chat = soak.rng.choice(soak.sim.chats)
    slow = await soak.bridge.acquire()
    try:
        tx = slow.transaction()
        await tx.start()
        low = await soak.sim.send_text(chat, chat.members[-1], "committed last", db=slow)
        soak.sent.append(await soak.sim.send_text(chat, chat.members[0], "committed first"))
        await asyncio.sleep(soak.rng.uniform(0.2, 2.0))
        await tx.commit()
        soak.sent.append(low)
    finally:
        await soak.bridge.release(slow)


async def fault_trigger_reinstalled(soak: Soak) -> None:
    """A bridge upgrade that rebuilds the table drops the trigger; the operator reinstalls it."""
    common.uninstall_trigger(soak.urls["bridge"])
    try:
        await asyncio.sleep(_hold_s(soak) / 2)
    finally:
        common.install_trigger(soak.urls["bridge"])


async def fault_late_media(soak: Soak) -> None:
    """A media file that reaches the media store only after its event (a slow upload)."""
    chat = soak.rng.choice(soak.sim.chats)
    media = soak.sim.random_media()
    sent = await soak.sim.send_media(chat, chat.members[0], media)
    soak.sent.append(sent)
    path = _local_file(soak, sent)
    if path is None or not path.exists():
        return
    data = path.read_bytes()
    path.unlink()
    soak.late_files.append((path, data))
    await asyncio.sleep(soak.rng.uniform(2.0, 10.0))
    path.write_bytes(data)
    soak.late_files.remove((path, data))


def _local_file(soak: Soak, sent: simulator.SentMessage) -> Path | None:
    url = sent.content.get("url") if isinstance(sent.content, dict) else None
    if not isinstance(url, str) or not url.startswith("mxc://"):
        return None
    media_id = url.rsplit("/", 1)[1]
    return soak.media_store / synapse_writer.media_content_path(media_id)


FAULT_ACTIONS: dict[str, Callable[[Soak], Awaitable[None]]] = {
    name: globals()[f"fault_{name}"] for name in FAULTS
}


async def fault_scheduler(soak: Soak, stop: asyncio.Event) -> None:
    """One fault at a time, at random (seeded) intervals, every kind in turn at first."""
    mean_gap_s = soak.args.fault_every_s
    order = list(FAULTS)
    soak.rng.shuffle(order)
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), soak.rng.expovariate(1 / mean_gap_s))
        if stop.is_set():
            break
        kind = order.pop() if order else soak.rng.choice(FAULTS)
        fault = Fault(kind, time.time())
        soak.faults.append(fault)
        try:
            await FAULT_ACTIONS[kind](soak)
        finally:
            fault.ended = time.time()


# -- traffic -----------------------------------------------------------------------------------


async def traffic(soak: Soak, stop: asyncio.Event) -> None:
    await soak.sim.run_traffic(soak.args.rate, 10**9, on_sent=soak.sent.append, stop=stop)


async def touch_ups(soak: Soak, stop: asyncio.Event) -> None:
    """Edits, reactions and revokes of recent messages, about one a second each."""
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), soak.rng.uniform(0.3, 1.0))
        recent = [
            s
            for s in soak.sent[-200:]
            if s.event_id not in soak.revoked and s.event_type == "m.room.message"
        ]
        if not recent:
            continue
        target = soak.rng.choice(recent)
        roll = soak.rng.random()
        if roll < 0.4 and "url" not in target.content:
            edit = await soak.sim.edit(target, f"edited {len(soak.edits)}")
            soak.edits[edit] = target.event_id
        elif roll < 0.8:
            by = soak.rng.choice(target.chat.members)
            key = soak.rng.choice(("👍", "❤️", "😂", "🙏"))
            soak.reactions[await soak.sim.react(target, by, key)] = target.event_id
        else:
            await soak.sim.revoke(target)
            soak.revoked.add(target.event_id)


async def rss_sampler(soak: Soak, stop: asyncio.Event) -> None:
    while not stop.is_set():
        soak.archiver.sample_rss()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.1)


# -- the end: settle, verify, reconcile independently -------------------------------------------


async def settle(soak: Soak, archive: asyncpg.Pool, timeout_s: float) -> float:
    """Wait until every sent message and every bridge row is archived and the cursor is at the
    newest rowid; the seconds it took."""
    started = time.monotonic()
    wanted = {s.event_id for s in soak.sent}
    while time.monotonic() - started < timeout_s:
        have = {
            r["event_id"]
            for r in await archive.fetch(
                "SELECT event_id FROM messages WHERE event_id = ANY($1::text[])", list(wanted)
            )
        }
        newest = await soak.bridge.fetchval("SELECT coalesce(max(rowid), 0) FROM message")
        cursor = await archive.fetchval(
            "SELECT (value->>'rowid')::bigint FROM archiver_state WHERE name = 'bridge_cursor'"
        )
        pending = await archive.fetchval("SELECT count(*) FROM media WHERE status = 'pending'")
        if (
            have == wanted
            and cursor is not None
            and cursor >= newest
            and pending == 0
            and await _touch_ups_recorded(soak, archive)
        ):
            return time.monotonic() - started
        await asyncio.sleep(0.5)
    return float("nan")


async def _touch_ups_recorded(soak: Soak, archive: asyncpg.Pool) -> bool:
    """Every edit, reaction and revoke made is on record (the reconciliation pass's work)."""
    edits = await archive.fetchval(
        "SELECT count(*) FROM message_edits WHERE edit_event_id = ANY($1::text[])", list(soak.edits)
    )
    reactions = await archive.fetchval(
        "SELECT count(*) FROM reactions WHERE reaction_event_id = ANY($1::text[])",
        list(soak.reactions),
    )
    deleted = await archive.fetchval(
        "SELECT count(*) FROM messages WHERE event_id = ANY($1::text[]) AND deleted_at IS NOT NULL",
        list(soak.revoked),
    )
    return (edits, reactions, deleted) == (len(soak.edits), len(soak.reactions), len(soak.revoked))


async def run_verify(soak: Soak) -> dict[str, Any]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "listener",
        "verify",
        "--json",
        env=soak.archiver.env,
        cwd=common.REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    try:
        report: dict[str, Any] = json.loads(out)
    except ValueError:
        report = {"error": err.decode()[-2000:]}
    report["exit_code"] = proc.returncode
    return report


async def reconcile(soak: Soak, archive: asyncpg.Pool, synapse: asyncpg.Pool) -> dict[str, Any]:
    """The soak's own accounting, from the sources (never through the archiver's code)."""
    bridge_rows = await soak.bridge.fetch("SELECT rowid, mxid FROM message")
    messages = await archive.fetch(
        "SELECT event_id, content, bridge_rowid, edit_count, deleted_at FROM messages"
    )
    by_event = Counter(r["event_id"] for r in messages)
    archived = {r["event_id"]: r for r in messages}
    expected = {r["mxid"] for r in bridge_rows} | {s.event_id for s in soak.sent}
    lost = sorted(expected - set(archived))
    doubled = sorted(e for e, n in by_event.items() if n > 1)
    rowids = Counter(r["bridge_rowid"] for r in messages if r["bridge_rowid"] is not None)
    doubled += sorted(f"rowid {r}" for r, n in rowids.items() if n > 1)
    content_mismatch = await _content_mismatches(soak, archived, synapse)
    edits = {
        r["edit_event_id"] for r in await archive.fetch("SELECT edit_event_id FROM message_edits")
    }
    reactions = {
        r["reaction_event_id"]
        for r in await archive.fetch("SELECT reaction_event_id FROM reactions")
    }
    missing_edits = sorted(set(soak.edits) - edits)
    missing_reactions = sorted(set(soak.reactions) - reactions)
    undeleted = sorted(e for e in soak.revoked if archived.get(e) and not archived[e]["deleted_at"])
    media = await _media_check(soak, archive)
    failures = await archive.fetch(
        "SELECT kind, subject, reason FROM archive_failures WHERE resolved_at IS NULL"
    )
    return {
        "bridge_rows": len(bridge_rows),
        "sent": len(soak.sent),
        "archived": len(messages),
        "lost": len(lost),
        "lost_examples": lost[:5],
        "doubled": len(doubled),
        "content_mismatches": len(content_mismatch),
        "content_mismatch_examples": content_mismatch[:3],
        "edits_made": len(soak.edits),
        "edits_missing": len(missing_edits),
        "reactions_made": len(soak.reactions),
        "reactions_missing": len(missing_reactions),
        "revoked": len(soak.revoked),
        "revokes_not_recorded": len(undeleted),
        **media,
        "open_failures": [dict(r) for r in failures],
    }


async def _content_mismatches(
    soak: Soak, archived: dict[str, asyncpg.Record], synapse: asyncpg.Pool
) -> list[str]:
    """Unedited, undeleted messages must hold exactly Synapse's event content."""
    plain = [
        e
        for e, r in archived.items()
        if not r["edit_count"] and r["deleted_at"] is None and e not in soak.revoked
    ]
    rows = await synapse.fetch(
        "SELECT event_id, json FROM event_json WHERE event_id = ANY($1::text[])", plain
    )
    bad = []
    for row in rows:
        source = json.loads(row["json"]).get("content")
        if json.loads(archived[row["event_id"]]["content"]) != source:
            bad.append(row["event_id"])
    return bad


async def _media_check(soak: Soak, archive: asyncpg.Pool) -> dict[str, Any]:
    rows = await archive.fetch("SELECT event_id, mxc_url, status, sha256, storage_path FROM media")
    statuses = Counter(r["status"] for r in rows)
    wrong = []
    for r in rows:
        if r["status"] != "stored":
            continue
        source = soak.media_store / synapse_writer.media_content_path(
            r["mxc_url"].rsplit("/", 1)[1]
        )
        blob = soak.media_archive / r["storage_path"]
        source_sha = hashlib.sha256(source.read_bytes()).hexdigest() if source.exists() else None
        blob_sha = hashlib.sha256(blob.read_bytes()).hexdigest() if blob.exists() else None
        if not (source_sha == blob_sha == r["sha256"]):
            wrong.append(r["event_id"])
    return {
        "media_rows": len(rows),
        "media_status": dict(statuses),
        "media_not_byte_exact": len(wrong),
    }


# -- figures -----------------------------------------------------------------------------------


async def latencies(soak: Soak, archive: asyncpg.Pool) -> dict[str, Any]:
    rows = await archive.fetch(
        "SELECT event_id, extract(epoch FROM archived_at) AS at FROM messages "
        "WHERE event_id = ANY($1::text[])",
        [s.event_id for s in soak.sent],
    )
    at = {r["event_id"]: float(r["at"]) for r in rows}
    windows = [(f.started, f.ended + 5.0) for f in soak.faults]
    quiet, recovery = [], defaultdict(list)
    for s in soak.sent:
        if s.event_id not in at:
            continue
        latency = at[s.event_id] - s.committed_at_s
        if not any(lo <= s.committed_at_s <= hi for lo, hi in windows):
            quiet.append(latency)
    ordered = sorted(soak.sent, key=lambda s: s.committed_at_s)
    for fault in soak.faults:
        after = [s for s in ordered if s.committed_at_s >= fault.ended and s.event_id in at]
        back = next((s for s in after if at[s.event_id] - s.committed_at_s <= 1.0), None)
        if back is not None:
            recovery[fault.kind].append(back.committed_at_s - fault.ended)
    return {
        "outside_faults": common.summarize_ms(quiet),
        "recovery_s": {k: round(max(v), 2) for k, v in sorted(recovery.items())},
    }


# -- the run -----------------------------------------------------------------------------------


async def run(args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(args.seed)
    print(f"soak: seed {args.seed}, {args.minutes} min, {args.rate} msg/s", flush=True)
    async with common.databases() as dbs:
        urls = {
            "bridge": (await dbs.bridge())[1],
            "synapse": (await dbs.synapse())[1],
            "archive": (await dbs.archive())[1],
        }
        work = Path(tempfile.mkdtemp(prefix="bench-soak-"))
        media_store, media_archive = work / "media_store", work / "media_archive"
        media_store.mkdir()
        proxies = {}
        for name, url in urls.items():
            parts = urlsplit(url)
            proxies[name] = tcp_proxy.TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
            await proxies[name].start()
        env = {
            **os.environ,
            "WHATSAPP_DB_URL": proxies["bridge"].url_for(urls["bridge"]),
            "SYNAPSE_DB_URL": proxies["synapse"].url_for(urls["synapse"]),
            "ARCHIVE_DB_URL": proxies["archive"].url_for(urls["archive"]),
            "MEDIA_STORE_PATH": str(media_store),
            "MEDIA_ARCHIVE_PATH": str(media_archive),
            "SYNAPSE_SERVER_NAME": "example.org",
            "MEDIA_MISSING_RETRY_S": "2",
            "RECONCILE_GRACE_S": "2",
            # Reactions reach the archive through the reconciliation pass only (the simulated
            # bridge writes no reaction rows to wake it): a shorter period than the default 30 s
            # keeps the final settling short.
            "RECONCILE_INTERVAL_S": "5",
            "RECONNECT_MAX_BACKOFF_S": "2",
            "METRICS_ADDR": f"127.0.0.1:{common.free_port()}",
            "LOG_FORMAT": "json",
            "LOG_LEVEL": "WARNING",
        }
        pools = {k: await asyncpg.create_pool(u, min_size=1, max_size=4) for k, u in urls.items()}
        writer = synapse_writer.SqlSynapseWriter(
            pools["synapse"], server_name="example.org", media_store_path=media_store, rng=rng
        )
        sim = simulator.BridgeSimulator(pools["bridge"], writer, rng=rng)
        await sim.ensure_world()
        archiver = Archiver(env, work / "archiver.log")
        soak = Soak(
            args, urls, proxies, media_store, media_archive, sim, pools["bridge"], rng, archiver
        )
        try:
            await archiver.start()
            await common.wait_ready(env["METRICS_ADDR"])
            result = await _run_phases(soak, pools)
        finally:
            with contextlib.suppress(Exception):
                await archiver.stop()
            for pool in pools.values():
                await pool.close()
            for proxy in proxies.values():
                await proxy.stop()
        result["log"] = str(archiver.log)
        return result


async def _run_phases(soak: Soak, pools: dict[str, asyncpg.Pool]) -> dict[str, Any]:
    stop = asyncio.Event()
    started = time.monotonic()
    tasks = [
        asyncio.create_task(traffic(soak, stop)),
        asyncio.create_task(touch_ups(soak, stop)),
        asyncio.create_task(fault_scheduler(soak, stop)),
        asyncio.create_task(rss_sampler(soak, stop)),
    ]
    deadline = started + soak.args.minutes * 60
    # Every kind of fault at least once, even in a short run (up to three times its length).
    while time.monotonic() < deadline or (  # noqa: ASYNC110 - polls the clock and the fault list
        {f.kind for f in soak.faults if f.ended} != set(FAULTS)
        and time.monotonic() < started + 3 * soak.args.minutes * 60
    ):
        await asyncio.sleep(0.2)
    stop.set()
    await asyncio.gather(*tasks)
    for path, data in list(soak.late_files):  # a late file interrupted by the end: it arrives
        path.write_bytes(data)
    settle_s = await settle(soak, pools["archive"], soak.args.settle_timeout_s)
    verify = await run_verify(soak)
    checks = await reconcile(soak, pools["archive"], pools["synapse"])
    figures = await latencies(soak, pools["archive"])
    cursor = await pools["archive"].fetchval(
        "SELECT (value->>'rowid')::bigint FROM archiver_state WHERE name = 'bridge_cursor'"
    )
    newest = await pools["bridge"].fetchval("SELECT coalesce(max(rowid), 0) FROM message")
    return {
        "machine": common.machine_info(),
        "code": common.code_fingerprint(),
        "seed": soak.args.seed,
        "minutes": soak.args.minutes,
        "rate": soak.args.rate,
        "wall_s": round(time.monotonic() - started, 1),
        "faults": dict(Counter(f.kind for f in soak.faults)),
        "faults_total": len(soak.faults),
        "settle_s": round(settle_s, 1),
        "verify": {
            "exit_code": verify.get("exit_code"),
            "missing": verify.get("missing", verify),
        },
        "checks": checks,
        "latency": figures,
        "peak_rss_mb": round(soak.archiver.peak_rss / 2**20, 1),
        "unexpected_exits": soak.archiver.unexpected_exits,
        "cursor_end": {"saved": cursor, "newest_rowid": newest},
    }


def human(r: dict[str, Any]) -> str:
    c, lat = r["checks"], r["latency"]
    faults = ", ".join(f"{k} {v}" for k, v in sorted(r["faults"].items()))
    return "\n".join(
        [
            f"seed {r['seed']}, {r['minutes']} min at {r['rate']} msg/s",
            f"{r['faults_total']} faults: {faults}",
            f"sent {c['sent']}, bridge rows {c['bridge_rows']}, archived {c['archived']}",
            f"lost {c['lost']}, doubled {c['doubled']}, content mismatches "
            f"{c['content_mismatches']}",
            f"edits {c['edits_made']} (missing {c['edits_missing']}), reactions "
            f"{c['reactions_made']} (missing {c['reactions_missing']}), revokes {c['revoked']} "
            f"(not recorded {c['revokes_not_recorded']})",
            f"media rows {c['media_rows']} {c['media_status']}, not byte-exact "
            f"{c['media_not_byte_exact']}; open failures {len(c['open_failures'])}",
            f"verify: exit {r['verify']['exit_code']}, missing {r['verify']['missing']}",
            f"latency outside fault windows: {lat['outside_faults']}",
            f"recovery after a fault (s, worst per kind): {lat['recovery_s']}",
            f"peak RSS {r['peak_rss_mb']} MB; unexpected exits {r['unexpected_exits']}",
            f"settled in {r['settle_s']} s; cursor {r['cursor_end']}",
        ]
    )


def failures(r: dict[str, Any]) -> list[str]:
    """What makes a run fail (an empty list: it passed)."""
    c = r["checks"]
    problems = []
    for key in ("lost", "doubled", "content_mismatches", "edits_missing", "reactions_missing"):
        if c[key]:
            problems.append(f"{key}: {c[key]}")
    if c["revokes_not_recorded"] or c["media_not_byte_exact"] or c["open_failures"]:
        problems.append("revokes, media or open failures")
    if r["unexpected_exits"]:
        problems.append(f"unexpected exits: {r['unexpected_exits']}")
    if r["verify"]["exit_code"] != 0 or r["verify"]["missing"] != 0:
        problems.append(f"verify: {r['verify']}")
    if r["settle_s"] != r["settle_s"]:  # NaN: never settled
        problems.append("never settled")
    return problems


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=30.0)
    p.add_argument("--seed", type=int, default=None, help="replays a run (printed at start)")
    p.add_argument("--rate", type=float, default=100.0, help="messages per second")
    p.add_argument("--fault-every-s", type=float, default=None, help="mean gap between faults")
    p.add_argument("--settle-timeout-s", type=float, default=180.0)
    return p


def normalise(args: argparse.Namespace) -> argparse.Namespace:
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(2**31)
    if args.fault_every_s is None:
        # >= 100 faults in a 30-minute run; every kind early in a one-minute run.
        args.fault_every_s = min(8.0, args.minutes * 60 / (3 * len(FAULTS)))
    return args


def cli() -> None:
    args = normalise(parser().parse_args())
    result = asyncio.run(run(args))
    common.emit("soak", result, human(result))
    problems = failures(result)
    if problems:
        raise SystemExit("soak failed: " + "; ".join(problems))


if __name__ == "__main__":
    cli()
