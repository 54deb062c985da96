"""Backfill throughput and peak memory: ``archiver-db backfill`` over 100,000 messages.

Source data: a bridge database (bridge_v29 schema + trigger) and a Synapse-schema database,
filled by the bridge simulator's bulk path (``SqlSynapseWriter.send_events_bulk`` + one
multi-row INSERT per chunk: ``insert_many_in_one_transaction(..., one_statement=True)``) across
3 group chats and 2 DMs with ghosts of which a quarter are unsynced (empty name, so the display
name comes from Synapse), then VACUUM ANALYZE (this cluster runs with autovacuum off).

Each measured run is the real CLI in a subprocess, ``python -m listener backfill``, configured
only by environment variables (WHATSAPP_DB_URL, SYNAPSE_DB_URL, ARCHIVE_DB_URL, BATCH_SIZE,
WORKERS) against a fresh clone of a migrated archive database. Peak RSS is the child's
``ru_maxrss`` from ``wait4``; messages/s is rows / wall time of the whole process (start-up,
connections and the final cursor write included) and, separately, the CLI's own rate for the
backfill loop. Every run is checked: all rows archived, cursor at the newest rowid.

Then a matrix of BATCH_SIZE x WORKERS, then repeated, interleaved runs of the default and the
best configurations (medians), then the seed design's poll loop (bench/seed_baseline.py) as a
baseline on the same databases, extrapolated from a bounded run of a few polls.

    .venv/bin/python -m bench.backfill            # full: 100,000 messages
    .venv/bin/python -m bench.backfill --quick    # smoke: 5,000 messages, 2 configurations
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import asyncpg

from bench import common, seed_baseline
from listener.sim import bridge as simulator
from listener.sim import synapse_writer
from listener.sinks import protocol

RATE_TARGET = 10_000.0
RSS_TARGET_MB = 150.0
CHUNK = 2_000
MESSAGES_PER_SECOND_OF_HISTORY = 10  # insert_many spaces timestamps 10 per second


# -- source data --------------------------------------------------------------------------------


async def fill_sources(bridge_url: str, synapse_url: str, n: int) -> dict[str, Any]:
    bridge = await asyncpg.create_pool(bridge_url, min_size=1, max_size=2)
    synapse = await asyncpg.create_pool(synapse_url, min_size=1, max_size=2)
    rng = random.Random(42)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-media-") as media:
        writer = synapse_writer.SqlSynapseWriter(
            synapse,
            server_name="example.org",
            media_store_path=Path(media),
            rng=rng,
            thumbnails=False,
        )
        sim = simulator.BridgeSimulator(bridge, writer, rng=rng)
        await sim.ensure_world(groups=3, dms=2, group_size=4)
        # Non-overlapping history, oldest first: the seed poller's timestamp cursor then sees
        # the same order as the rowids.
        start_ns = (int(time.time()) - 90 * 86400) * simulator.NS_PER_S
        for i, begin in enumerate(range(0, n, CHUNK)):
            count = min(CHUNK, n - begin)
            chat = sim.chats[i % len(sim.chats)]
            ts = start_ns + begin // MESSAGES_PER_SECOND_OF_HISTORY * simulator.NS_PER_S
            await sim.insert_many_in_one_transaction(
                chat, count, start_ts_ns=ts, one_statement=True
            )
    fill_s = time.perf_counter() - t0
    for pool in (bridge, synapse):
        await pool.execute("VACUUM ANALYZE")
        await pool.close()
    return {"messages": n, "fill_seconds": round(fill_s, 1)}


async def build_sources(dbs: common.Databases, n: int) -> dict[str, str]:
    _, bridge = await dbs.bridge(trigger=True)
    _, synapse = await dbs.synapse()
    await fill_sources(bridge, synapse, n)
    return {"bridge": bridge, "synapse": synapse}


# -- one CLI run ----------------------------------------------------------------------------------


def run_cli(
    urls: dict[str, str],
    archive_url: str,
    batch: int,
    workers: int,
    extra_env: dict[str, str] | None = None,
) -> dict[str, Any]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("WHATSAPP_", "SYNAPSE_", "ARCHIVE_", "SUPABASE_"))
    }
    env |= {
        "WHATSAPP_DB_URL": urls["bridge"],
        "SYNAPSE_DB_URL": urls["synapse"],
        "ARCHIVE_DB_URL": archive_url,
        "BATCH_SIZE": str(batch),
        "WORKERS": str(workers),
        "LOG_LEVEL": "WARNING",
    }
    env |= extra_env or {}
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "listener", "backfill"],
        cwd=common.REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    chunks: dict[str, bytes] = {}
    readers = [
        threading.Thread(target=lambda n=n, s=s: chunks.__setitem__(n, s.read()))  # type: ignore[misc]
        for n, s in (("out", proc.stdout), ("err", proc.stderr))
    ]
    for r in readers:
        r.start()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    for r in readers:
        r.join()
    err = chunks["err"].decode(errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(f"backfill exited {proc.returncode}: {err[-2000:]}")
    done = re.search(r"backfill done: (\d+) rows", err)
    rates = re.findall(r"(\d+)/(\d+) rows\s+([\d,]+) rows/s", err)
    return {
        "batch_size": batch,
        "workers": workers,
        "rows": int(done.group(1)) if done else None,
        "wall_s": round(wall, 3),
        "rate_wall_per_s": round(int(done.group(1)) / wall, 1) if done else None,
        "rate_cli_per_s": float(rates[-1][2].replace(",", "")) if rates else None,
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
        "cpu_user_s": round(usage.ru_utime, 2),
        "cpu_sys_s": round(usage.ru_stime, 2),
    }


async def check_archive(archive_url: str, bridge_url: str) -> dict[str, Any]:
    a = await asyncpg.connect(archive_url)
    b = await asyncpg.connect(bridge_url)
    try:
        archived = int(await a.fetchval("SELECT count(*) FROM messages"))
        cursor = await a.fetchval(
            "SELECT (value->>'rowid')::bigint FROM archiver_state WHERE name = $1",
            protocol.CURSOR_KEY,
        )
        newest = int(await b.fetchval("SELECT max(rowid) FROM message"))
        failures = int(await a.fetchval("SELECT count(*) FROM archive_failures"))
    finally:
        await a.close()
        await b.close()
    return {"archived": archived, "cursor": cursor, "newest_rowid": newest, "failures": failures}


async def measured(
    dbs: common.Databases, template: str, urls: dict[str, str], batch: int, workers: int, n: int
) -> dict[str, Any]:
    name, archive_url = await dbs.create("archive", template=template)
    try:
        await common.admin_execute("CHECKPOINT")
        run = run_cli(urls, archive_url, batch, workers)
        run |= await check_archive(archive_url, urls["bridge"])
    finally:
        await dbs.drop(name)
    run["ok"] = run["archived"] == n and run["cursor"] == run["newest_rowid"]
    print(
        f"  batch {batch:5} workers {workers:2}: {run['rate_wall_per_s']:9,.0f} msg/s wall "
        f"({run['rate_cli_per_s'] or 0:,.0f}/s loop), {run['wall_s']:.1f} s, peak RSS "
        f"{run['peak_rss_mb']} MB, CPU {run['cpu_user_s'] + run['cpu_sys_s']:.1f} s"
        f"{'' if run['ok'] else '  !! CHECK FAILED ' + str(run)}",
        flush=True,
    )
    return run


# -- main -----------------------------------------------------------------------------------------


async def main(args: argparse.Namespace) -> None:
    n = 5_000 if args.quick else args.messages
    batches = [100, 1000] if args.quick else [100, 500, 1000]
    worker_counts = [4] if args.quick else [1, 2, 4, 8]
    repeats = 1 if args.quick else args.repeats
    info = common.machine_info()
    result: dict[str, Any] = {
        "benchmark": "backfill",
        "machine": info,
        "quick": args.quick,
        "messages": n,
    }
    async with common.databases() as dbs:
        print(f"generating {n:,} messages ...", flush=True)
        _, bridge = await dbs.bridge(trigger=True)
        _, synapse = await dbs.synapse()
        result["generation"] = await fill_sources(bridge, synapse, n)
        urls = {"bridge": bridge, "synapse": synapse}
        template, _ = await dbs.archive()
        print("matrix (one run each):", flush=True)
        matrix = [
            await measured(dbs, template, urls, b, w, n) for b in batches for w in worker_counts
        ]
        result["matrix"] = matrix
        default = (100, 4)
        ranked = sorted(matrix, key=lambda r: -r["rate_wall_per_s"])
        contenders = [default] + [(r["batch_size"], r["workers"]) for r in ranked[:2]]
        contenders = list(dict.fromkeys(contenders))
        print(f"repeats ({repeats} interleaved rounds of {contenders}):", flush=True)
        reps: dict[str, list[dict[str, Any]]] = {f"{b}x{w}": [] for b, w in contenders}
        for _ in range(repeats):
            for b, w in contenders:
                reps[f"{b}x{w}"].append(await measured(dbs, template, urls, b, w, n))
        result["repeats"] = {
            key: {
                "median_rate_wall_per_s": round(
                    common.median([r["rate_wall_per_s"] for r in runs]), 1
                ),
                "median_rate_cli_per_s": round(
                    common.median([r["rate_cli_per_s"] or 0 for r in runs]), 1
                ),
                "max_peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
                "median_cpu_s": round(
                    common.median([r["cpu_user_s"] + r["cpu_sys_s"] for r in runs]), 2
                ),
                "rates": [r["rate_wall_per_s"] for r in runs],
                "all_ok": all(r["ok"] for r in runs),
            }
            for key, runs in reps.items()
        }
        print(f"seed baseline ({args.seed_polls} polls of 5 s) ...", flush=True)
        _, seed_url = await dbs.create("archive", template=template)
        seed = await seed_baseline.run_seed(
            bridge,
            synapse,
            seed_url,
            polls=args.seed_polls,
            poll_interval_s=1.0 if args.quick else 5.0,
        )
        result["seed_baseline"] = seed
    finish(result, n)


def finish(result: dict[str, Any], n: int) -> None:
    reps = result["repeats"]
    best_key = max(reps, key=lambda k: reps[k]["median_rate_wall_per_s"])
    default = reps.get("100x4") or next(iter(reps.values()))
    seed = result["seed_baseline"]
    rate = default["median_rate_wall_per_s"]
    rss = max(r["max_peak_rss_mb"] for r in reps.values())
    result["best"] = best_key
    result["seed_extrapolated"] = seed_baseline.extrapolate(seed, n)
    result["speedup_vs_seed"] = round(rate / seed["throughput_per_s"], 1)
    result["speedup_vs_seed_unthrottled"] = (
        round(rate / seed["unthrottled_per_s"], 1) if seed["unthrottled_per_s"] else None
    )
    result["targets"] = [
        {
            "name": f">= {RATE_TARGET:,.0f} msg/s (default 100x4)",
            "value": f"{rate:,.0f}/s",
            "verdict": "met" if rate >= RATE_TARGET else "MISSED",
        },
        {
            "name": f">= {RATE_TARGET:,.0f} msg/s (best {best_key})",
            "value": f"{reps[best_key]['median_rate_wall_per_s']:,.0f}/s",
            "verdict": "met"
            if reps[best_key]["median_rate_wall_per_s"] >= RATE_TARGET
            else "MISSED",
        },
        {
            "name": f"peak RSS <= {RSS_TARGET_MB:.0f} MB",
            "value": f"{rss} MB",
            "verdict": "met" if rss <= RSS_TARGET_MB else "MISSED",
        },
    ]
    lines = [f"backfill of {n:,} messages ({result['generation']['fill_seconds']} s to generate):"]
    for r in result["matrix"]:
        lines.append(
            f"  batch {r['batch_size']:5} x {r['workers']} workers: "
            f"{r['rate_wall_per_s']:9,.0f} msg/s, peak RSS {r['peak_rss_mb']} MB"
        )
    for key, v in reps.items():
        lines.append(
            f"  repeated {key}: median {v['median_rate_wall_per_s']:,.0f} msg/s "
            f"(runs {v['rates']}), peak RSS {v['max_peak_rss_mb']} MB"
        )
    lines.append(
        f"  seed poll loop: {seed['per_message_ms']} ms/message, {seed['throughput_per_s']} msg/s "
        f"-> {result['seed_extrapolated']['hours']} h for {n:,}; archiver-db default is "
        f"{result['speedup_vs_seed']}x faster ({result['speedup_vs_seed_unthrottled']}x the "
        f"seed's unthrottled one-by-one loop at {seed['unthrottled_per_s']}/s)"
    )
    for t in result["targets"]:
        lines.append(f"  target {t['name']}: {t['value']} -> {t['verdict']}")
    common.emit("backfill", result, "\n".join(lines))


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed-polls", type=int, default=2)
    asyncio.run(main(parser.parse_args()))


if __name__ == "__main__":
    cli()
