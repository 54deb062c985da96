"""The Supabase sink: backfill throughput against the PostgreSQL sink, and latency at 100 msg/s.

The Supabase side is the stub (tests/supabase_stub: PostgREST and Storage subsets on a real,
migrated archive database on the local cluster), run as its own process (``python -m
tests.supabase_stub``) so its CPU does not count against the archiver; the archiver talks to it
over HTTP on 127.0.0.1 with the real supabase client, exactly as it would talk to Supabase.
A real project adds the network round trip (typically 20-100 ms per request) that this leaves
out; the numbers here are the archiver's own cost and the ratio to the PG sink.

Backfill: the same 100,000 messages as bench/backfill.py (``fill_sources``), archived by the real
CLI (``python -m listener backfill``, WORKERS=4, BATCH_SIZE=100, the defaults) into a fresh clone
of a migrated archive, once through ARCHIVE_DB_URL (PG sink) and once through SUPABASE_URL
(Supabase sink), interleaved, ``--repeats`` rounds; medians and their ratio. Every run is
checked: all rows archived, cursor at the newest rowid.

Latency: bench/latency.py's method (the bridge simulator in a child process at 100 msg/s,
matched by event ID against the service's ``on_archived`` hook, which fires after the sink's
write returned) with the Supabase sink.

    .venv/bin/python -m bench.supabase            # 100,000 messages; 100 msg/s for 60 s
    .venv/bin/python -m bench.supabase --quick    # 5,000 messages; 50 msg/s for 5 s
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

from bench import backfill, common, latency
from listener import service, settings
from tests.supabase_stub import DEFAULT_KEY

RATIO_TARGET = 3.0
P99_TARGET_MS = 100.0


@contextlib.contextmanager
def stub_process(archive_url: str) -> Iterator[str]:
    """The stub in its own process; yields its URL."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.supabase_stub", "--db-url", archive_url],
        cwd=common.REPO, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        if not line.startswith("listening on "):
            raise RuntimeError(f"stub failed to start: {line!r}")
        yield line.removeprefix("listening on ")
    finally:
        proc.terminate()
        proc.wait(10)


def run_backfill(urls: dict[str, str], sink_env: dict[str, str]) -> dict[str, Any]:
    """``python -m listener backfill`` with the defaults; wall time, rate and peak RSS."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("WHATSAPP_", "SYNAPSE_", "ARCHIVE_", "SUPABASE_"))}  # fmt: skip
    env |= {
        "WHATSAPP_DB_URL": urls["bridge"],
        "SYNAPSE_DB_URL": urls["synapse"],
        "LOG_LEVEL": "WARNING",
        "METRICS_ADDR": "127.0.0.1:0",
        **sink_env,
    }
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "listener", "backfill"],
        cwd=common.REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    err: list[bytes] = []
    reader = threading.Thread(target=lambda: err.append(proc.stderr.read()))  # type: ignore[union-attr]
    reader.start()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    reader.join()
    text = b"".join(err).decode(errors="replace")
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"backfill failed: {text[-2000:]}")
    done = re.search(r"backfill done: (\d+) rows", text)
    rows = int(done.group(1)) if done else 0
    return {
        "rows": rows,
        "wall_s": round(wall, 3),
        "rate_per_s": round(rows / wall, 1),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
    }


async def one_round(
    dbs: common.Databases, template: str, urls: dict[str, str], sink: str, n: int
) -> dict[str, Any]:
    name, archive_url = await dbs.create("archive", template=template)
    try:
        await common.admin_execute("CHECKPOINT")
        if sink == "postgres":
            run = run_backfill(urls, {"ARCHIVE_DB_URL": archive_url})
        else:
            with stub_process(archive_url) as url:
                run = run_backfill(urls, {"SUPABASE_URL": url, "SUPABASE_KEY": DEFAULT_KEY})
        run |= await backfill.check_archive(archive_url, urls["bridge"])
    finally:
        await dbs.drop(name)
    run["sink"] = sink
    run["ok"] = run["archived"] == n and run["cursor"] == run["newest_rowid"]
    check = "" if run["ok"] else f"  !! CHECK FAILED {run}"
    print(
        f"  {sink:9}: {run['rate_per_s']:8,.0f} msg/s, {run['wall_s']:.1f} s, "
        f"RSS {run['peak_rss_mb']} MB, CPU {run['cpu_s']} s{check}",
        flush=True,
    )
    return run


async def measure_backfill(dbs: common.Databases, n: int, repeats: int) -> dict[str, Any]:
    print(f"generating {n:,} messages ...", flush=True)
    urls = await backfill.build_sources(dbs, n)
    template, _ = await dbs.archive()
    runs = []
    for _ in range(repeats):
        for sink in ("postgres", "supabase"):
            runs.append(await one_round(dbs, template, urls, sink, n))
    medians = {
        sink: statistics.median(r["rate_per_s"] for r in runs if r["sink"] == sink)
        for sink in ("postgres", "supabase")
    }
    return {
        "messages": n,
        "runs": runs,
        "median_rate_per_s": medians,
        "ratio_pg_over_supabase": round(medians["postgres"] / medians["supabase"], 2),
        "all_ok": all(r["ok"] for r in runs),
    }


@contextlib.asynccontextmanager
async def supabase_service(
    urls: dict[str, str], stub_url: str, hook: Any
) -> AsyncIterator[service.Service]:
    config = settings.Settings(
        whatsapp_db_url=urls["bridge"],
        synapse_db_url=urls["synapse"],
        supabase_url=stub_url,
        supabase_key=DEFAULT_KEY,
        # Media off, as in bench/latency.py (no MEDIA_ARCHIVE_PATH there): text latency only.
        media_store_path=None,
        download_media=False,
        log_level="WARNING",
        metrics_addr="127.0.0.1:0",
    )
    svc = service.Service(config, on_archived=hook)
    await svc.open()
    task = asyncio.create_task(svc.run(), name="archiver")
    try:
        await asyncio.wait_for(svc.ready.wait(), 10)
        await asyncio.wait_for(svc.listener.connected.wait(), 10)
        yield svc
    finally:
        svc.stop_event.set()
        await asyncio.wait_for(task, 60)
        await svc.close()


async def measure_latency(dbs: common.Databases, args: argparse.Namespace) -> dict[str, Any]:
    urls = {
        "bridge": (await dbs.bridge(trigger=True))[1],
        "synapse": (await dbs.synapse())[1],
        "archive": (await dbs.archive())[1],
    }
    archived = latency.Archived()
    print(
        f"latency: {args.rate}/s for {args.duration_s} s through the Supabase sink ...", flush=True
    )
    with stub_process(urls["archive"]) as stub_url:
        async with supabase_service(urls, stub_url, archived.hook):
            child = latency.TrafficProcess(args, urls["bridge"], urls["synapse"])
            await child.start()
            sent = await child.run()
            for _ in range(600):  # up to 30 s for the tail
                if all(s.event_id in archived.at for s in sent):
                    break
                await asyncio.sleep(0.05)
    steady = [s for s in sent if not s.warmup]
    lat = [archived.at[s.event_id] - s.committed_at_s for s in steady if s.event_id in archived.at]
    return {
        "rate_per_s": args.rate,
        "duration_s": args.duration_s,
        "messages_sent": len(sent),
        "archived": sum(1 for s in sent if s.event_id in archived.at),
        "latency": common.summarize_ms(lat),
    }


def human(result: dict[str, Any]) -> str:
    lat = result["latency"]["latency"]
    lines = []
    if "backfill" in result:
        b = result["backfill"]
        rates = b["median_rate_per_s"]
        lines.append(
            f"backfill of {b['messages']:,} messages (median of {result['repeats']} interleaved "
            f"rounds): PostgreSQL sink {rates['postgres']:,.0f} msg/s, Supabase sink (stub) "
            f"{rates['supabase']:,.0f} msg/s -> PG/Supabase = {b['ratio_pg_over_supabase']}x "
            f"(target <= {RATIO_TARGET}x: "
            f"{'met' if b['ratio_pg_over_supabase'] <= RATIO_TARGET else 'MISSED'})"
        )
    lines.append(
        f"latency at {result['latency']['rate_per_s']:.0f} msg/s through the Supabase sink: "
        f"p50 {lat.get('p50_ms')} ms, p99 {lat.get('p99_ms')} ms, max {lat.get('max_ms')} ms "
        f"(target p99 <= {P99_TARGET_MS:.0f} ms: "
        f"{'met' if lat.get('p99_ms', 1e9) <= P99_TARGET_MS else 'MISSED'}); archived "
        f"{result['latency']['archived']}/{result['latency']['messages_sent']}"
    )
    return "\n".join(lines)


async def main(args: argparse.Namespace) -> None:
    n = 5_000 if args.quick else args.messages
    result: dict[str, Any] = {
        "benchmark": "supabase",
        "machine": common.machine_info(),
        "quick": args.quick,
        "repeats": args.repeats,
        "archiver_settings": "defaults (WORKERS=4, BATCH_SIZE=100), uvloop",
    }
    async with common.databases() as dbs:
        if not args.latency_only:
            result["backfill"] = await measure_backfill(dbs, n, args.repeats)
        result["latency"] = await measure_latency(dbs, args)
    common.emit("supabase", result, human(result))


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short smoke run")
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--rate", type=float, default=100.0, help="messages per second")
    parser.add_argument("--duration-s", type=float, default=60.0)
    parser.add_argument("--warmup-s", type=float, default=5.0)
    parser.add_argument("--latency-only", action="store_true", help="skip the backfill part")
    args = parser.parse_args()
    if args.quick:
        args.rate, args.duration_s, args.repeats = 50.0, 5.0, 1
    latency._run(main(args))


if __name__ == "__main__":
    cli()
