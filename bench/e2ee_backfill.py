"""Backfill of an encrypted portal's history against the same history in the clear
(issue 17: goal ≥ 0.5x the clear rate), and peak RSS with the session cache full.

Two source pairs (bridge + Synapse schema databases) hold the same number of messages from the
bridge simulator's bulk path; in the encrypted pair every chat is encrypted with vodozemac
Megolm sessions, rotated every ``messages / sessions`` messages, each inbound session stored
in ``crypto_megolm_inbound_session`` as a libolm pickle (as mautrix-go stores it). Each run is
the real CLI, ``python -m listener backfill``, against a fresh migrated archive; the encrypted
runs set BRIDGE_PICKLE_KEY. Runs alternate clear/encrypted; medians are reported, and every run
is checked (all rows archived; encrypted: all decrypted).

    .venv/bin/python -m bench.e2ee_backfill                      # 100,000 messages, 200 sessions
    .venv/bin/python -m bench.e2ee_backfill --quick              # 5,000 messages, 10 sessions
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg

from bench import backfill, common
from listener.sim import bridge as simulator
from listener.sim import megolm, synapse_writer

PICKLE_KEY = "bench-pickle-key"


async def fill(bridge_url: str, synapse_url: str, n: int, sessions: int, *, encrypt: bool) -> float:
    bridge = await asyncpg.create_pool(bridge_url, min_size=1, max_size=2)
    synapse = await asyncpg.create_pool(synapse_url, min_size=1, max_size=2)
    await bridge.execute(simulator.fixture_sql("crypto_store_v21.sql"))
    rng = random.Random(42)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-media-") as media:
        writer = synapse_writer.SqlSynapseWriter(
            synapse, server_name="example.org", media_store_path=Path(media), rng=rng
        )
        sim = simulator.BridgeSimulator(bridge, writer, rng=rng)
        await sim.ensure_world(groups=3, dms=2, group_size=4)
        if encrypt:
            sim.encrypted_rooms.update(chat.room_id for chat in sim.chats)
        per_session = max(1, n // sessions)
        start_ns = (int(time.time()) - 90 * 86400) * simulator.NS_PER_S
        for i, begin in enumerate(range(0, n, per_session)):
            chat = sim.chats[i % len(sim.chats)]
            if encrypt:
                outbound = sim.encryptor.rotate(chat.room_id)
                await megolm.store_session(bridge, outbound, PICKLE_KEY.encode())
            ts = start_ns + begin // 10 * simulator.NS_PER_S
            await sim.insert_many_in_one_transaction(
                chat, min(per_session, n - begin), start_ts_ns=ts, one_statement=True
            )
    for pool in (bridge, synapse):
        await pool.execute("VACUUM ANALYZE")
        await pool.close()
    return time.perf_counter() - t0


async def run(
    dbs: common.Databases, template: str, urls: dict[str, str], n: int, *, encrypt: bool
) -> dict[str, Any]:
    name, archive_url = await dbs.create("archive", template=template)
    try:
        await common.admin_execute("CHECKPOINT")
        extra = {"BRIDGE_PICKLE_KEY": PICKLE_KEY} if encrypt else {}
        result = backfill.run_cli(urls, archive_url, 100, 4, extra_env=extra)
        archive = await asyncpg.connect(archive_url)
        try:
            result["archived"] = await archive.fetchval("SELECT count(*) FROM messages")
            result["decrypted"] = await archive.fetchval(
                "SELECT count(*) FROM messages WHERE decryption = 'decrypted'"
            )
        finally:
            await archive.close()
    finally:
        await dbs.drop(name)
    result["ok"] = result["archived"] == n and result["decrypted"] == (n if encrypt else 0)
    print(
        f"  {'encrypted' if encrypt else 'clear    '}: {result['rate_wall_per_s']:8,.0f} msg/s, "
        f"{result['wall_s']:.1f} s, peak RSS {result['peak_rss_mb']} MB"
        f"{'' if result['ok'] else '  !! CHECK FAILED ' + str(result)}",
        flush=True,
    )
    return result


async def main(args: argparse.Namespace) -> None:
    n, sessions = (5_000, 10) if args.quick else (args.messages, args.sessions)
    result: dict[str, Any] = {
        "benchmark": "e2ee_backfill",
        "machine": common.machine_info(),
        "messages": n,
        "sessions": sessions,
    }
    async with common.databases() as dbs:
        pairs: dict[bool, dict[str, str]] = {}
        for encrypt in (False, True):
            _, bridge = await dbs.bridge(trigger=True)
            _, synapse = await dbs.synapse()
            seconds = await fill(bridge, synapse, n, sessions, encrypt=encrypt)
            print(f"filled {'encrypted' if encrypt else 'clear'} sources in {seconds:.0f} s")
            pairs[encrypt] = {"bridge": bridge, "synapse": synapse}
        template, _ = await dbs.archive()
        runs: dict[bool, list[dict[str, Any]]] = {False: [], True: []}
        for _ in range(args.repeats):
            for encrypt in (False, True):
                runs[encrypt].append(await run(dbs, template, pairs[encrypt], n, encrypt=encrypt))
    clear = common.median([r["rate_wall_per_s"] for r in runs[False]])
    encrypted = common.median([r["rate_wall_per_s"] for r in runs[True]])
    result |= {
        "clear": runs[False],
        "encrypted": runs[True],
        "median_clear_per_s": clear,
        "median_encrypted_per_s": encrypted,
        "ratio": round(encrypted / clear, 3),
        "max_rss_encrypted_mb": max(r["peak_rss_mb"] for r in runs[True]),
        "max_rss_clear_mb": max(r["peak_rss_mb"] for r in runs[False]),
        "all_ok": all(r["ok"] for r in runs[False] + runs[True]),
    }
    human = (
        f"backfill of {n:,} messages ({sessions} Megolm sessions): clear {clear:,.0f}/s, "
        f"encrypted {encrypted:,.0f}/s = {result['ratio']:.2f}x (goal >= 0.5x); peak RSS "
        f"{result['max_rss_encrypted_mb']} MB encrypted vs {result['max_rss_clear_mb']} MB clear"
    )
    common.emit("e2ee_backfill", result, human)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    asyncio.run(main(parser.parse_args()))
