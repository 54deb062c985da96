"""What one query costs through an asyncpg pool, as the archiver's sources and sink use it.

``pool.fetch(...)`` acquires a connection, runs the query and, on release, runs asyncpg's
connection reset (``Connection.reset()``: a second round trip with ``pg_advisory_unlock_all()``,
``CLOSE ALL``, ``UNLISTEN *``, ``RESET ALL``). Compared, interleaved, median per call:
a bare connection, the default pool, and a pool created with ``reset=`` a no-op (asyncpg >= 0.30).

    .venv/bin/python -m bench.pool_roundtrip            # 5 rounds x 1,000 calls each
    .venv/bin/python -m bench.pool_roundtrip --quick
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import asyncpg

from bench import common


async def _no_reset(_conn: asyncpg.Connection) -> None:
    return None


async def main(args: argparse.Namespace) -> None:
    common.check_local()
    calls = 200 if args.quick else args.calls
    rounds = 2 if args.quick else args.rounds
    conn = await asyncpg.connect(common.ADMIN_URL)
    pool = await asyncpg.create_pool(common.ADMIN_URL, min_size=1, max_size=1)
    bare = await asyncpg.create_pool(common.ADMIN_URL, min_size=1, max_size=1, reset=_no_reset)
    variants = {"connection": conn.fetchval, "pool": pool.fetchval, "pool_no_reset": bare.fetchval}
    samples: dict[str, list[float]] = {k: [] for k in variants}
    for rnd in range(rounds):
        order = list(variants) if rnd % 2 == 0 else list(reversed(variants))
        for name in order:
            fn = variants[name]
            for _ in range(calls):
                t0 = time.perf_counter()
                await fn("SELECT 1")
                samples[name].append(time.perf_counter() - t0)
    await conn.close()
    await pool.close()
    await bare.close()
    result: dict[str, Any] = {
        "benchmark": "pool_roundtrip",
        "machine": common.machine_info(),
        "calls_per_variant": calls * rounds,
        "latency": {k: common.summarize_ms(v) for k, v in samples.items()},
    }
    lat = result["latency"]
    common.emit(
        "pool_roundtrip",
        result,
        "SELECT 1, median per call: " + ", ".join(f"{k} {v['p50_ms']} ms" for k, v in lat.items()),
    )


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.run(main(args))
    except ImportError:  # pragma: no cover
        asyncio.run(main(args))


if __name__ == "__main__":
    cli()
