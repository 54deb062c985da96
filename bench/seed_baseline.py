"""The seed design's poll loop (PRD 06, "Phase 1: Database Poller Service"), as a baseline.

Implemented faithfully to the PRD's pseudocode, against the same databases as archiver-db:
every ``POLL_INTERVAL_MS`` (5 s) one query
``... WHERE m.timestamp > $last ORDER BY m.timestamp ASC LIMIT 100`` (portal and ghost joined as
written: ``m.room_id = p.id``, ``m.sender_id = g.id``), then for each message, one at a time:
one Synapse query (``SELECT json FROM event_json WHERE event_id = $1``), one upsert of the
message, and ``updateLastProcessedTimestamp(msg.timestamp)``.

Deliberately generous to the baseline: the upsert goes to the local archive PostgreSQL (not
Supabase over HTTPS) and the cursor is a local state file (no fsync), so its per-message cost is
a lower bound. Its throughput cap does not depend on that: at most 100 rows per 5 s poll.

    .venv/bin/python -m bench.seed_baseline            # own databases, 1,000 messages, 2 polls
    .venv/bin/python -m bench.seed_baseline --quick    # 300 messages, 2 polls of 1 s
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from bench import common

POLL_SQL = """
SELECT m.*, p.name AS room_name, g.name AS sender_name
FROM message m
JOIN portal p ON m.room_id = p.id
JOIN ghost g ON m.sender_id = g.id
WHERE m.timestamp > $1
ORDER BY m.timestamp ASC
LIMIT 100
"""
EVENT_SQL = "SELECT json FROM event_json WHERE event_id = $1"
# supabase.from('messages').upsert({...}): PostgREST's upsert on the primary key.
UPSERT_SQL = """
INSERT INTO messages (event_id, room_id, room_name, sender, sender_display_name, "timestamp",
                      message_type, content)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb)
ON CONFLICT (event_id) DO UPDATE SET
    room_id = EXCLUDED.room_id, room_name = EXCLUDED.room_name, sender = EXCLUDED.sender,
    sender_display_name = EXCLUDED.sender_display_name, "timestamp" = EXCLUDED."timestamp",
    message_type = EXCLUDED.message_type, content = EXCLUDED.content
"""
LIMIT = 100


class SeedPoller:
    def __init__(
        self,
        bridge: asyncpg.Connection,
        synapse: asyncpg.Connection,
        archive: asyncpg.Connection,
        state_file: Path,
    ) -> None:
        self._bridge, self._synapse, self._archive = bridge, synapse, archive
        self._state_file = state_file

    def get_last_processed_timestamp(self) -> int:
        if not self._state_file.exists():
            return 0
        return int(json.loads(self._state_file.read_text())["last"])

    def update_last_processed_timestamp(self, ts: int) -> None:
        self._state_file.write_text(json.dumps({"last": ts}))

    async def poll_messages(self) -> int:
        last = self.get_last_processed_timestamp()
        rows = await self._bridge.fetch(POLL_SQL, last)
        for msg in rows:
            event = await self._synapse.fetchrow(EVENT_SQL, msg["mxid"])
            content = json.loads(event["json"])["content"] if event else {}
            await self._archive.execute(
                UPSERT_SQL,
                msg["mxid"],
                msg["room_id"],
                msg["room_name"],
                msg["sender_mxid"],
                msg["sender_name"],
                datetime.fromtimestamp(msg["timestamp"] / 1e9, UTC),
                content.get("msgtype"),
                json.dumps(content),
            )
            # (media handling would go here; the benchmark's messages are texts)
            self.update_last_processed_timestamp(msg["timestamp"])
        return len(rows)


async def run_seed(
    bridge_url: str,
    synapse_url: str,
    archive_url: str,
    *,
    polls: int = 2,
    poll_interval_s: float = 5.0,
) -> dict[str, Any]:
    """Run ``polls`` polls on the PRD's cadence; return what they did and the extrapolation."""
    conns = [await asyncpg.connect(u) for u in (bridge_url, synapse_url, archive_url)]
    per_poll: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="bench-seed-") as tmp:
        poller = SeedPoller(*conns, state_file=Path(tmp) / "state.json")
        began = time.perf_counter()
        for k in range(polls):
            due = began + k * poll_interval_s
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            t0 = time.perf_counter()
            rows = await poller.poll_messages()
            per_poll.append({"rows": rows, "seconds": time.perf_counter() - t0})
        wall_s = (began + polls * poll_interval_s) - began
    archived = int(await conns[2].fetchval("SELECT count(*) FROM messages"))
    for conn in conns:
        await conn.close()
    rows = sum(p["rows"] for p in per_poll)
    busy_s = sum(p["seconds"] for p in per_poll)
    per_message_ms = busy_s / rows * 1000 if rows else float("nan")
    # Steady state: LIMIT rows per max(interval, time to process them).
    cycle_s = max(poll_interval_s, LIMIT * per_message_ms / 1000)
    return {
        "polls": polls,
        "poll_interval_s": poll_interval_s,
        "per_poll": [{"rows": p["rows"], "seconds": round(p["seconds"], 4)} for p in per_poll],
        "rows": rows,
        "archived": archived,
        "wall_s": wall_s,
        "per_message_ms": round(per_message_ms, 3),
        "throughput_per_s": round(LIMIT / cycle_s, 2),
        "unthrottled_per_s": round(1000 / per_message_ms, 1) if rows else None,
    }


def extrapolate(seed: dict[str, Any], messages: int) -> dict[str, Any]:
    rate = seed["throughput_per_s"]
    return {
        "messages": messages,
        "seconds": round(messages / rate, 1),
        "hours": round(messages / rate / 3600, 2),
    }


async def main(args: argparse.Namespace) -> None:
    from bench import backfill  # the same data generator as the backfill benchmark

    n = 300 if args.quick else args.messages
    interval = 1.0 if args.quick else 5.0
    info = common.machine_info()
    async with common.databases() as dbs:
        urls = await backfill.build_sources(dbs, n)
        _, archive = await dbs.archive()
        seed = await run_seed(
            urls["bridge"], urls["synapse"], archive, polls=args.polls, poll_interval_s=interval
        )
    result = {
        "benchmark": "seed_baseline",
        "machine": info,
        "quick": args.quick,
        "messages_in_bridge": n,
        "seed": seed,
        "extrapolated_100k": extrapolate(seed, 100_000),
    }
    human = (
        f"seed poll loop: {seed['rows']} rows in {seed['polls']} polls of {interval:.0f} s; "
        f"{seed['per_message_ms']:.2f} ms per message (Synapse query + upsert + state write); "
        f"throughput {seed['throughput_per_s']} msg/s (cap {LIMIT / interval:.0f}/s); "
        f"unthrottled one-by-one loop {seed['unthrottled_per_s']} msg/s; 100k messages would take "
        f"{result['extrapolated_100k']['hours']} h"
    )
    common.emit("seed_baseline", result, human)


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--polls", type=int, default=2)
    asyncio.run(main(parser.parse_args()))


if __name__ == "__main__":
    cli()
