"""Where the archiver's CPU goes during a backfill: ``listener.cli.backfill(svc)`` in-process
under cProfile, plus the CPU the PostgreSQL backends spent on the three databases.

Diagnostic companion to bench/backfill.py (which times the real CLI in a subprocess).

    .venv/bin/python -m bench.profile_backfill                 # 20,000 messages, batch 500 x 2
    .venv/bin/python -m bench.profile_backfill --quick         # 3,000 messages
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import pstats
import threading
import time
from typing import Any

import psutil

from bench import backfill, common
from listener import cli, service, settings


class BackendCpu:
    """Sums user+system CPU of the PostgreSQL backends serving the named databases."""

    def __init__(self, databases: list[str]) -> None:
        self._dbs = databases
        self._seen: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> BackendCpu:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _poll(self) -> None:
        while not self._stop.is_set():
            for proc in psutil.process_iter(["cmdline"]):
                cmd = " ".join(proc.info["cmdline"] or [])
                if cmd.startswith("postgres:") and any(db in cmd for db in self._dbs):
                    try:
                        t = proc.cpu_times()
                        self._seen[proc.pid] = t.user + t.system
                    except psutil.Error:
                        pass
            self._stop.wait(0.1)

    @property
    def cpu_s(self) -> float:
        return sum(self._seen.values())


async def main(args: argparse.Namespace) -> None:
    n = 3_000 if args.quick else args.messages
    async with common.databases() as dbs:
        b_name, bridge = await dbs.bridge(trigger=True)
        s_name, synapse = await dbs.synapse()
        await backfill.fill_sources(bridge, synapse, n)
        a_name, archive = await dbs.archive()
        config = settings.Settings(
            whatsapp_db_url=bridge,
            synapse_db_url=synapse,
            archive_db_url=archive,
            batch_size=args.batch_size,
            workers=args.workers,
            log_level="WARNING",
        )
        svc = service.Service(config)
        await svc.open()
        profiler = cProfile.Profile()
        proc = psutil.Process()
        cpu0 = proc.cpu_times()
        with BackendCpu([b_name, s_name, a_name]) as pg:
            t0 = time.perf_counter()
            profiler.enable()
            done = await cli.backfill(svc)
            profiler.disable()
            wall = time.perf_counter() - t0
        cpu1 = proc.cpu_times()
        await svc.close()
    own = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out).strip_dirs()
    stats.sort_stats("tottime").print_stats(25)
    stats.sort_stats("cumulative").print_stats(30)
    print(out.getvalue())
    result: dict[str, Any] = {
        "benchmark": "profile_backfill",
        "machine": common.machine_info(),
        "messages": done,
        "batch_size": args.batch_size,
        "workers": args.workers,
        "wall_s_under_profiler": round(wall, 2),
        "archiver_cpu_s_under_profiler": round(own, 2),
        "postgres_backend_cpu_s": round(pg.cpu_s, 2),
        "postgres_cpu_us_per_message": round(pg.cpu_s / done * 1e6, 1) if done else None,
    }
    common.emit(
        "profile_backfill",
        result,
        f"{done} rows in {wall:.1f} s under cProfile; archiver CPU {own:.1f} s, PostgreSQL "
        f"backends CPU {pg.cpu_s:.1f} s ({result['postgres_cpu_us_per_message']} us/message)",
    )


def cli_main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--workers", type=int, default=2)
    asyncio.run(main(parser.parse_args()))


if __name__ == "__main__":
    cli_main()
