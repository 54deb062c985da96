"""Costs as the history grows: backfill rate and memory at 100k, 1M and 5M messages, then the
service on the full archive (first passes, idle CPU, live latency, verify and status).

Sources are built in two steps: the simulator writes a seed (a world of chats, 2,000 messages in
one big chat, a few media messages), then SQL multiplies the seed's text messages inside the
real bridge and Synapse schemas (``INSERT ... SELECT`` over ``generate_series``: new event IDs,
stream positions and rowids, one chat holding most of the history) until the size is reached.
For each size, in one run:

- ``archiver-db backfill`` (a subprocess, BATCH_SIZE 500 x 4 workers): rate and peak RSS;
- the floor beside it: a minimal asyncpg copier (bridge rows and Synapse JSON read by rowid
  ranges, archive rows written with ``COPY``, no enrichment), and the ratio backfill / floor;
- ``archiver-db run`` on the full archive: seconds until its first passes settle (the sweep's
  cursor at the newest rowid, the reconciliation pass at Synapse's newest stream position), idle
  CPU over 20 s afterwards, live latency at ``--rate`` msg/s as a ratio to the same run's figure
  on an empty archive; ``archiver-db verify`` and ``archiver-db status`` wall times.

    python -m bench.scale [--sizes 100000,1000000,5000000] [--rate 100] [--live-s 30]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg
import psutil

from bench import backfill, common
from listener.sim import bridge as simulator
from listener.sim import synapse_writer

SEED_MESSAGES = 2000
CHUNK_COPIES = 50  # seed copies per INSERT (100k rows per statement)


# -- sources -----------------------------------------------------------------------------------


async def build(dbs: common.Databases, size: int, media: Path) -> dict[str, str]:
    urls = {"bridge": (await dbs.bridge())[1], "synapse": (await dbs.synapse())[1]}
    bridge = await asyncpg.create_pool(urls["bridge"], min_size=1, max_size=2)
    synapse = await asyncpg.create_pool(urls["synapse"], min_size=1, max_size=2)
    try:
        rng = random.Random(5)
        writer = synapse_writer.SqlSynapseWriter(
            synapse, server_name="example.org", media_store_path=media, rng=rng, thumbnails=False
        )
        sim = simulator.BridgeSimulator(bridge, writer, rng=rng)
        await sim.ensure_world(groups=4, dms=3)
        big = sim.chats[0]
        start_ns = (int(time.time()) - 400 * 86400) * simulator.NS_PER_S
        seed = await sim.insert_many_in_one_transaction(
            big, SEED_MESSAGES, start_ts_ns=start_ns, one_statement=True
        )
        for chat in sim.chats[1:]:
            for _ in range(5):
                await sim.send_media(chat, chat.members[0], sim.random_media())
            await sim.insert_many_in_one_transaction(chat, 200, one_statement=True)
        copies = max(0, -(-(size - _count_so_far(sim, seed)) // SEED_MESSAGES))
        await _multiply(bridge, synapse, [s.event_id for s in seed], copies, size)
        for pool in (bridge, synapse):
            await pool.execute("VACUUM ANALYZE")
    finally:
        await bridge.close()
        await synapse.close()
    return urls


def _count_so_far(sim: simulator.BridgeSimulator, seed: list[simulator.SentMessage]) -> int:
    return len(seed) + (len(sim.chats) - 1) * 205


async def _multiply(
    bridge: asyncpg.Pool, synapse: asyncpg.Pool, seed_ids: list[str], copies: int, size: int
) -> None:
    """``copies`` more copies of the seed messages, in order, in both databases."""
    # Each copy one seed-length later (the seed spans 200 s: ten messages a second): 5M messages
    # span 6 days, all in the past, so none is "young" to the reconciliation pass.
    step_ms = 100 * len(seed_ids)
    for first in range(1, copies + 1, CHUNK_COPIES):
        last = min(copies, first + CHUNK_COPIES - 1)
        await synapse.execute(SYNAPSE_COPY, seed_ids, first, last, step_ms)
        await bridge.execute(BRIDGE_COPY, seed_ids, first, last, step_ms * 1_000_000)
    # Synapse hands out stream positions from this sequence: later events come after the copies.
    await synapse.execute(
        "SELECT setval('events_stream_seq', (SELECT max(stream_ordering) FROM events))"
    )
    # Exactly ``size`` rows: drop the newest surplus copies (never the seed).
    surplus = await bridge.fetchval("SELECT count(*) FROM message") - size
    if surplus > 0:
        gone = await bridge.fetch(
            "DELETE FROM message WHERE rowid IN (SELECT rowid FROM message ORDER BY rowid DESC "
            "LIMIT $1) RETURNING mxid",
            surplus,
        )
        ids = [r["mxid"] for r in gone]
        await synapse.execute("DELETE FROM events WHERE event_id = ANY($1::text[])", ids)
        await synapse.execute("DELETE FROM event_json WHERE event_id = ANY($1::text[])", ids)


SYNAPSE_COPY = """
WITH copies AS (
    SELECT e.*, j.internal_metadata, j.json, j.format_version, g,
           row_number() OVER (ORDER BY g, e.stream_ordering) AS n
    FROM events e
    JOIN event_json j USING (event_id)
    CROSS JOIN generate_series($2::int, $3::int) AS g
    WHERE e.event_id = ANY($1::text[])
), base AS (
    SELECT max(stream_ordering) AS so, max(topological_ordering) AS topo FROM events
), ins_json AS (
    INSERT INTO event_json (event_id, room_id, internal_metadata, json, format_version)
    SELECT event_id || '_' || g, room_id, internal_metadata, json, format_version FROM copies
)
INSERT INTO events (topological_ordering, event_id, type, room_id, processed, outlier, depth,
                    origin_server_ts, received_ts, sender, contains_url, instance_name,
                    stream_ordering, state_key)
SELECT base.topo + n, event_id || '_' || g, type, room_id, processed, outlier, base.topo + n,
       origin_server_ts + g * $4::bigint, received_ts, sender, contains_url,
       instance_name, base.so + n, state_key
FROM copies, base
"""

BRIDGE_COPY = """
INSERT INTO message (bridge_id, id, part_id, mxid, room_id, room_receiver, sender_id, sender_mxid,
                     timestamp, edit_count, double_puppeted, thread_root_id, reply_to_id,
                     reply_to_part_id, send_txn_id, metadata)
SELECT m.bridge_id, m.id || '_' || g, m.part_id, m.mxid || '_' || g, m.room_id, m.room_receiver,
       m.sender_id, m.sender_mxid, m.timestamp + g * $4::bigint, m.edit_count,
       m.double_puppeted, NULL, NULL, NULL, NULL, m.metadata
FROM message m CROSS JOIN generate_series($2::int, $3::int) AS g
WHERE m.mxid = ANY($1::text[])
ORDER BY g, m.rowid
"""


# -- the floor ---------------------------------------------------------------------------------


async def floor_copy(urls: dict[str, str], archive_url: str, page: int = 5000) -> dict[str, Any]:
    """Bridge rows and Synapse JSON by rowid ranges into archive rows, no enrichment."""
    bridge = await asyncpg.connect(urls["bridge"])
    synapse = await asyncpg.connect(urls["synapse"])
    archive = await asyncpg.connect(archive_url)
    await archive.execute(
        "CREATE TABLE IF NOT EXISTS floor_messages (event_id text PRIMARY KEY, "
        "room_id text, sender text, ts bigint, json text, bridge_rowid bigint)"
    )
    started, done, after = time.perf_counter(), 0, 0
    try:
        while True:
            rows = await bridge.fetch(
                "SELECT rowid, mxid, room_id, sender_mxid, timestamp FROM message "
                "WHERE rowid > $1 ORDER BY rowid LIMIT $2",
                after,
                page,
            )
            if not rows:
                break
            events = await synapse.fetch(
                "SELECT event_id, json FROM event_json WHERE event_id = ANY($1::text[])",
                [r["mxid"] for r in rows],
            )
            json_of = {e["event_id"]: e["json"] for e in events}
            records = [_floor_record(r, json_of) for r in rows]
            await archive.copy_records_to_table("floor_messages", records=records)
            done += len(rows)
            after = rows[-1]["rowid"]
    finally:
        await bridge.close()
        await synapse.close()
        await archive.close()
    wall = time.perf_counter() - started
    return {"rows": done, "wall_s": round(wall, 2), "rate_per_s": round(done / wall, 1)}


def _floor_record(row: asyncpg.Record, json_of: dict[str, str]) -> tuple[Any, ...]:
    mxid = row["mxid"]
    return (mxid, row["room_id"], row["sender_mxid"], row["timestamp"], json_of.get(mxid), row[0])


# -- the service on the full archive -------------------------------------------------------------


def _env(urls: dict[str, str], archive_url: str, media: Path) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("WHATSAPP_", "SYNAPSE_"))},
        "WHATSAPP_DB_URL": urls["bridge"],
        "SYNAPSE_DB_URL": urls["synapse"],
        "ARCHIVE_DB_URL": archive_url,
        "MEDIA_STORE_PATH": str(media),
        "METRICS_ADDR": f"127.0.0.1:{common.free_port()}",
        "LOG_LEVEL": "WARNING",
    }


async def service_figures(
    urls: dict[str, str], archive_url: str, media: Path, args: argparse.Namespace
) -> dict[str, Any]:
    env = _env(urls, archive_url, media)
    archive = await asyncpg.connect(archive_url)
    synapse = await asyncpg.connect(urls["synapse"])
    bridge = await asyncpg.connect(urls["bridge"])
    started = time.monotonic()
    proc = await common.start_archiver(env)
    try:
        newest_so = await synapse.fetchval("SELECT max(stream_ordering) FROM events")
        newest_rowid = await bridge.fetchval("SELECT max(rowid) FROM message")
        settled_s = await _until_settled(archive, newest_rowid, newest_so, started, timeout_s=1800)
        process = psutil.Process(proc.pid)
        cpu0 = process.cpu_times()
        await asyncio.sleep(20)
        cpu1 = process.cpu_times()
        idle_cpu = (cpu1.user + cpu1.system - cpu0.user - cpu0.system) / 20 * 100
        live = await live_latency(urls, archive, media, args)
        rss_mb = process.memory_info().rss / 2**20
    finally:
        proc.terminate()
        await proc.wait()
        for conn in (archive, synapse, bridge):
            await conn.close()
    return {
        "first_passes_settled_s": round(settled_s, 1),
        "idle_cpu_percent": round(idle_cpu, 2),
        "live": live,
        "rss_after_mb": round(rss_mb, 1),
        "verify_s": _timed(env, "verify"),
        "status_s": _timed(env, "status"),
    }


async def _until_settled(
    archive: asyncpg.Connection, rowid: int, stream: int, started: float, timeout_s: float
) -> float:
    while time.monotonic() - started < timeout_s:
        state = {
            r["name"]: json.loads(r["value"])
            for r in await archive.fetch("SELECT name, value::text FROM archiver_state")
        }
        cursor = (state.get("bridge_cursor") or {}).get("rowid", 0)
        position = (state.get("synapse_cursor") or {}).get("stream_ordering", 0)
        if cursor >= rowid and position >= stream:
            return time.monotonic() - started
        await asyncio.sleep(0.5)
    return float("nan")


async def live_latency(
    urls: dict[str, str], archive: asyncpg.Connection, media: Path, args: argparse.Namespace
) -> dict[str, Any]:
    bridge = await asyncpg.create_pool(urls["bridge"], min_size=1, max_size=2)
    synapse = await asyncpg.create_pool(urls["synapse"], min_size=1, max_size=2)
    try:
        rng = random.Random(11)
        writer = synapse_writer.SqlSynapseWriter(
            synapse, server_name="example.org", media_store_path=media, rng=rng
        )
        sim = simulator.BridgeSimulator(bridge, writer, rng=rng)
        await sim.ensure_world(groups=2, dms=1)
        sent = await sim.run_traffic(args.rate, args.live_s)
        deadline = time.monotonic() + 30
        latencies: list[float] = []
        while time.monotonic() < deadline:
            rows = await archive.fetch(
                "SELECT event_id, extract(epoch FROM archived_at) AS at FROM messages "
                "WHERE event_id = ANY($1::text[])",
                [s.event_id for s in sent],
            )
            if len(rows) == len(sent):
                at = {r["event_id"]: float(r["at"]) for r in rows}
                latencies = [at[s.event_id] - s.committed_at_s for s in sent]
                break
            await asyncio.sleep(0.2)
    finally:
        await bridge.close()
        await synapse.close()
    return {"sent": len(sent), **common.summarize_ms(latencies)}


def _timed(env: dict[str, str], command: str) -> float:
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "listener", command], env=env, cwd=common.REPO,
        capture_output=True, check=False,
    )  # fmt: skip
    return round(time.perf_counter() - started, 2)


# -- the run -----------------------------------------------------------------------------------


async def one_size(size: int, args: argparse.Namespace) -> dict[str, Any]:
    async with common.databases() as dbs:
        media = Path(tempfile.mkdtemp(prefix="bench-scale-media-"))
        t0 = time.perf_counter()
        urls = await build(dbs, size, media)
        build_s = time.perf_counter() - t0
        _, archive_url = await dbs.archive()
        _, floor_url = await dbs.archive()
        result: dict[str, Any] = {"size": size, "build_s": round(build_s, 1)}
        result["backfill"] = backfill.run_cli(urls, archive_url, 500, 4)
        result["floor"] = await floor_copy(urls, floor_url)
        result["backfill_vs_floor"] = round(
            result["backfill"]["rate_wall_per_s"] / result["floor"]["rate_per_s"], 2
        )
        if args.service:
            result["service"] = await service_figures(urls, archive_url, media, args)
        print(json.dumps(result), flush=True)
        return result


async def empty_baseline(args: argparse.Namespace) -> dict[str, Any]:
    """Live latency on an empty archive, the same way, in the same run."""
    async with common.databases() as dbs:
        media = Path(tempfile.mkdtemp(prefix="bench-scale-media-"))
        urls = {"bridge": (await dbs.bridge())[1], "synapse": (await dbs.synapse())[1]}
        _, archive_url = await dbs.archive()
        env = _env(urls, archive_url, media)
        proc = await common.start_archiver(env)
        archive = await asyncpg.connect(archive_url)
        try:
            await common.wait_ready(env["METRICS_ADDR"])
            return await live_latency(urls, archive, media, args)
        finally:
            proc.terminate()
            await proc.wait()
            await archive.close()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    baseline = await empty_baseline(args) if args.service else None
    sizes = [await one_size(int(s), args) for s in args.sizes.split(",")]
    for entry in sizes:
        if baseline and "service" in entry:
            p99 = entry["service"]["live"].get("p99_ms")
            entry["service"]["live_p99_vs_empty"] = (
                round(p99 / baseline["p99_ms"], 2) if p99 and baseline.get("p99_ms") else None
            )
    first = sizes[0]["backfill"]["rate_wall_per_s"]
    for entry in sizes:
        entry["backfill_rate_vs_first"] = round(entry["backfill"]["rate_wall_per_s"] / first, 2)
    return {
        "machine": common.machine_info(),
        "code": common.code_fingerprint(),
        "empty_archive_live": baseline,
        "sizes": sizes,
    }


def human(r: dict[str, Any]) -> str:
    lines = []
    if r["empty_archive_live"]:
        e = r["empty_archive_live"]
        lines.append(f"empty archive: live p50 {e.get('p50_ms')} ms, p99 {e.get('p99_ms')} ms")
    for s in r["sizes"]:
        b, f = s["backfill"], s["floor"]
        lines.append(
            f"{s['size']:>9,}: backfill {b['rate_wall_per_s']:,.0f}/s "
            f"(x{s['backfill_rate_vs_first']} of the first size), peak RSS {b['peak_rss_mb']} MB;"
            f" floor {f['rate_per_s']:,.0f}/s; backfill/floor {s['backfill_vs_floor']}"
        )
        if "service" in s:
            v = s["service"]
            lines.append(
                f"           service: first passes {v['first_passes_settled_s']} s, idle CPU "
                f"{v['idle_cpu_percent']} %, live p50 {v['live'].get('p50_ms')} / p99 "
                f"{v['live'].get('p99_ms')} ms (x{v.get('live_p99_vs_empty')} of empty), "
                f"verify {v['verify_s']} s, status {v['status_s']} s, RSS {v['rss_after_mb']} MB"
            )
    return "\n".join(lines)


def cli() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="100000,1000000,5000000")
    p.add_argument("--rate", type=float, default=100.0)
    p.add_argument("--live-s", type=float, default=30.0)
    p.add_argument("--no-service", dest="service", action="store_false")
    args = p.parse_args()
    result = asyncio.run(run(args))
    common.emit("scale", result, human(result))


if __name__ == "__main__":
    cli()
