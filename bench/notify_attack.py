"""Hostile notifications: the archiver's memory and live latency while anyone NOTIFYs its channel.

Any role that may connect to the bridge database can NOTIFY the archiver's channel. This runs
the real service (``python -m listener run``, default settings, the sweep slowed to 10 minutes
so that live messages reach the archive through the notification path alone) while the bridge
simulator sends a steady 20 messages a second, and a role with nothing but CONNECT sends, phase
by phase: ``[[0, 2^63-1]]`` and ``[[0, 50000000]]`` as INSERT and as UPDATE, 1,000 payloads of
159 wide ranges each, 10,000 malformed payloads, then a sustained flood of whole-space ranges.

After each phase a probe message is sent; its latency (bridge commit → archive ``archived_at``)
says whether a message right after the attack is archived within a second. The service's peak
RSS is sampled every 20 ms. At the end every bridge row must be archived exactly once.

    python -m bench.notify_attack [--flood-s 20] [--rate 20]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil

from bench import common
from listener.sim import bridge as simulator
from listener.sim import synapse_writer

MAX = 2**63 - 1
CHANNEL = "archiver_db"


def _note(op: str, ranges: list[list[int]]) -> str:
    return json.dumps({"v": 1, "table": "message", "op": op, "ranges": ranges})


MALFORMED = [
    "{",
    "null",
    '{"v":1}',
    '{"v":2,"table":"message","op":"INSERT","ranges":[[1,2]]}',
    '{"v":1,"table":"message","op":"INSERT","ranges":[[5,1]]}',
    '{"v":1,"table":"message","op":"INSERT","ranges":[[0,9223372036854775808]]}',
    "[" * 3000 + "]" * 3000,
    "x" * 7000,
]
WIDE = [[i * 10**15, i * 10**15 + 10**14] for i in range(1, 160)]  # fits in one payload


def phases(rng: random.Random) -> list[tuple[str, list[str]]]:
    return [
        ("insert [[0, 2^63-1]]", [_note("INSERT", [[0, MAX]])]),
        ("insert [[0, 50M]]", [_note("INSERT", [[0, 50_000_000]])]),
        ("update [[0, 2^63-1]]", [_note("UPDATE", [[0, MAX]])]),
        ("update [[0, 50M]]", [_note("UPDATE", [[0, 50_000_000]])]),
        ("1,000 x 159 wide ranges", [_note(rng.choice(["INSERT", "UPDATE"]), WIDE)] * 1000),
        ("10,000 malformed", [rng.choice(MALFORMED) for _ in range(10_000)]),
    ]


class Service:
    """``python -m listener run`` in its own process, with its RSS sampled."""

    def __init__(self, urls: dict[str, str], media: Path) -> None:
        self.port = common.free_port()
        self.env = {
            **os.environ,
            "WHATSAPP_DB_URL": urls["bridge"],
            "SYNAPSE_DB_URL": urls["synapse"],
            "ARCHIVE_DB_URL": urls["archive"],
            "MEDIA_STORE_PATH": str(media),
            "POLL_INTERVAL_MS": "600000",
            "RECONCILE_INTERVAL_S": "600",
            "METRICS_ADDR": f"127.0.0.1:{self.port}",
            "LOG_LEVEL": "WARNING",
            "LOG_FORMAT": "json",
        }
        self.proc: asyncio.subprocess.Process | None = None
        self.peak_rss = 0
        self.start_rss = 0
        self._sampler: asyncio.Task[None] | None = None
        self.log = Path(tempfile.mkstemp(prefix="bench-notify-attack-", suffix=".log")[1])

    async def start(self) -> None:
        self.proc = await common.start_archiver(self.env, stderr=self.log.open("wb"))
        await common.wait_ready(f"127.0.0.1:{self.port}")
        process = psutil.Process(self.proc.pid)
        self.start_rss = process.memory_info().rss
        self._sampler = asyncio.create_task(self._sample(process))

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def _sample(self, process: psutil.Process) -> None:
        while True:
            with contextlib.suppress(psutil.Error):
                self.peak_rss = max(self.peak_rss, process.memory_info().rss)
            await asyncio.sleep(0.02)

    async def metrics(self) -> dict[str, float]:
        async with httpx.AsyncClient(timeout=5.0) as client:
            text = (await client.get(self.url("/metrics"))).text
        wanted = ("archiver_notifications_total", "archiver_notify_backlog_ranges")
        return {
            line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith(wanted)
        }

    async def stop(self) -> int:
        if self._sampler is not None:
            self._sampler.cancel()
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.terminate()
        return await asyncio.wait_for(self.proc.wait(), 60)


@contextlib.asynccontextmanager
async def _attacker(bridge_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection as a role with nothing but CONNECT on the bridge database."""
    role = common.unique("attacker")
    database = bridge_url.rsplit("/", 1)[1]
    await common.admin_execute(f'CREATE ROLE "{role}" LOGIN NOSUPERUSER')
    try:
        await common.admin_execute(f'GRANT CONNECT ON DATABASE "{database}" TO "{role}"')
        conn = await asyncpg.connect(bridge_url.replace("postgres@", f"{role}@", 1))
        try:
            yield conn
        finally:
            await conn.close()
            await common.admin_execute(f'REVOKE CONNECT ON DATABASE "{database}" FROM "{role}"')
    finally:
        await common.admin_execute(f'DROP ROLE "{role}"')


async def _latencies(archive: asyncpg.Pool, sent: list[simulator.SentMessage]) -> dict[str, float]:
    rows = await archive.fetch(
        "SELECT event_id, extract(epoch FROM archived_at) AS at FROM messages "
        "WHERE event_id = ANY($1::text[])",
        [s.event_id for s in sent],
    )
    at = {r["event_id"]: float(r["at"]) for r in rows}
    return {s.event_id: at[s.event_id] - s.committed_at_s for s in sent if s.event_id in at}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(args.seed)
    async with common.databases() as dbs:
        urls = {
            "bridge": (await dbs.bridge())[1],
            "synapse": (await dbs.synapse())[1],
            "archive": (await dbs.archive())[1],
        }
        media = Path(tempfile.mkdtemp(prefix="bench-media-"))
        pools = [await asyncpg.create_pool(urls[k], min_size=1, max_size=3) for k in urls]
        bridge_pool, synapse_pool, archive_pool = pools
        writer = synapse_writer.SqlSynapseWriter(
            synapse_pool, server_name="example.org", media_store_path=media, rng=rng
        )
        sim = simulator.BridgeSimulator(bridge_pool, writer, rng=rng)
        await sim.ensure_world()
        svc = Service(urls, media)
        await svc.start()
        try:
            async with _attacker(urls["bridge"]) as attacker:
                return await _attack(args, sim, svc, attacker, archive_pool, bridge_pool, rng)
        finally:
            exit_code = await svc.stop()
            for pool in pools:
                await pool.close()
            if exit_code != 0:
                print(f"archiver exited with {exit_code}; log: {svc.log}", file=sys.stderr)


async def _attack(
    args: argparse.Namespace,
    sim: simulator.BridgeSimulator,
    svc: Service,
    attacker: asyncpg.Connection,
    archive: asyncpg.Pool,
    bridge: asyncpg.Pool,
    rng: random.Random,
) -> dict[str, Any]:
    steady: list[simulator.SentMessage] = []
    stop_traffic = asyncio.Event()
    traffic = asyncio.create_task(
        sim.run_traffic(args.rate, 10**9, on_sent=steady.append, stop=stop_traffic)
    )
    results: list[dict[str, Any]] = []
    try:
        await asyncio.sleep(3)
        probe = await sim.send_text(sim.chats[0], sim.chats[0].members[0], "probe: quiet")
        results.append({"phase": "quiet", "notifications": 0, "probes": [probe]})
        for name, payloads in phases(rng):
            started = time.monotonic()
            for text in payloads:
                await attacker.execute("SELECT pg_notify($1, $2)", CHANNEL, text)
            sent_s = time.monotonic() - started
            probe = await sim.send_text(sim.chats[0], sim.chats[0].members[0], f"probe: {name}")
            results.append(
                {"phase": name, "notifications": len(payloads), "send_s": sent_s, "probes": [probe]}
            )
            await asyncio.sleep(2)
        # A sustained flood: whole-space ranges as fast as one connection can NOTIFY.
        flood_name = f"flood of [[0, 2^63-1]] for {args.flood_s:.0f} s"
        started, count, probes = time.monotonic(), 0, []
        next_probe = started + 1.0
        while time.monotonic() - started < args.flood_s:
            await attacker.execute(
                "SELECT pg_notify($1, $2)",
                CHANNEL,
                _note(("INSERT", "UPDATE")[count % 2], [[0, MAX]]),
            )
            count += 1
            if time.monotonic() >= next_probe:
                probes.append(
                    await sim.send_text(sim.chats[0], sim.chats[0].members[0], f"flood {count}")
                )
                next_probe += 1.0
        results.append(
            {"phase": flood_name, "notifications": count, "send_s": args.flood_s, "probes": probes}
        )
        await asyncio.sleep(2)
    finally:
        stop_traffic.set()
        await traffic
    everything = steady + [p for r in results for p in r["probes"]]
    deadline = time.monotonic() + 60
    latency: dict[str, float] = {}
    while time.monotonic() < deadline:
        latency = await _latencies(archive, everything)
        if len(latency) == len(everything):
            break
        await asyncio.sleep(0.2)
    counters = await svc.metrics()
    bridge_rows = await bridge.fetchval("SELECT count(*) FROM message")
    archived = await archive.fetchrow(
        "SELECT count(*) AS n, count(DISTINCT event_id) AS events, "
        "count(DISTINCT bridge_rowid) AS rowids FROM messages"
    )
    for r in results:
        r["probe_latency_ms"] = [
            round(latency.get(p.event_id, float("nan")) * 1000, 1) for p in r.pop("probes")
        ]
    steady_lat = [latency[s.event_id] for s in steady if s.event_id in latency]
    return {
        "machine": common.machine_info(),
        "code": common.code_fingerprint(),
        "args": vars(args),
        "phases": results,
        "steady": {"sent": len(steady), **common.summarize_ms(steady_lat)},
        "rss_mb": {
            "at_start": round(svc.start_rss / 2**20, 1),
            "peak": round(svc.peak_rss / 2**20, 1),
        },
        "bridge_rows": bridge_rows,
        "archived": dict(archived),
        "lost": bridge_rows - archived["events"],
        "doubled": archived["n"] - archived["events"],
        "metrics": counters,
    }


def human(result: dict[str, Any]) -> str:
    rss, steady = result["rss_mb"], result["steady"]
    lines = [
        f"service RSS: {rss['at_start']} MB at start, peak {rss['peak']} MB",
        f"steady traffic: {steady['sent']} sent, p50 {steady.get('p50_ms')} ms, "
        f"p99 {steady.get('p99_ms')} ms, max {steady.get('max_ms')} ms",
    ]
    for r in result["phases"]:
        probes = r["probe_latency_ms"]
        worst = max(probes) if probes else float("nan")
        lines.append(
            f"  {r['phase']:<36} {r['notifications']:>7} NOTIFYs -> next message archived in "
            f"{worst} ms (worst of {len(probes)})"
        )
    lines.append(
        f"bridge rows {result['bridge_rows']}, archived {result['archived']['n']}: "
        f"lost {result['lost']}, doubled {result['doubled']}"
    )
    lines.append(f"metrics: {result['metrics']}")
    return "\n".join(lines)


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=20.0, help="steady messages per second")
    parser.add_argument("--flood-s", type=float, default=20.0, help="sustained flood duration")
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args()
    result = asyncio.run(run(args))
    common.emit("notify_attack", result, human(result))
    if result["lost"] or result["doubled"]:
        raise SystemExit("messages lost or doubled")


if __name__ == "__main__":
    cli()
