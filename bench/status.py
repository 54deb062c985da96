"""``archiver-db status`` as the archive grows: wall time of the command (a subprocess, as an
operator runs it) and of each query it makes, on archives of 100k, 1M and 5M messages (six
chats, one of them holding 90%), written with SQL through the archive schema's triggers.

It also times the query ``status`` used before migration 0005 (the newest message per room
ordered ``DESC NULLS LAST``, which no index can give), for the ratio.

    python -m bench.status [--sizes 100000,1000000,5000000] [--runs 5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from typing import Any

import asyncpg

from bench import common
from listener.db import queries
from listener.schema import migrate

ROOMS = ["!big:bench", "!a:bench", "!b:bench", "!c:bench", "!d:bench", "!e:bench"]
BEFORE_0005 = """
WITH RECURSIVE rooms AS (
    (SELECT room_id FROM messages WHERE room_id IS NOT NULL ORDER BY room_id LIMIT 1)
    UNION ALL
    SELECT (SELECT m.room_id FROM messages m
            WHERE m.room_id > rooms.room_id ORDER BY m.room_id LIMIT 1)
    FROM rooms
    WHERE rooms.room_id IS NOT NULL
)
SELECT r.room_id, last.room_name, last.event_id, last."timestamp", last.archived_at,
       last.message_type
FROM rooms r
CROSS JOIN LATERAL (
    SELECT m.room_name, m.event_id, m."timestamp", m.archived_at, m.message_type
    FROM messages m
    WHERE m.room_id = r.room_id
    ORDER BY m."timestamp" DESC NULLS LAST
    LIMIT 1
) last
WHERE r.room_id IS NOT NULL
ORDER BY last."timestamp" DESC NULLS LAST
"""


async def _fill(url: str, total: int) -> None:
    conn = await asyncpg.connect(url)
    try:
        # 90% in one chat, the rest spread over five; a message a minute.
        await conn.execute(
            """
            INSERT INTO messages (event_id, room_id, room_name, sender, "timestamp",
                message_type, content, body, synapse_stream_ordering)
            SELECT '$s' || g, CASE WHEN g % 10 = 0 THEN ($3::text[])[2 + g % 5] ELSE $4 END,
                   'chat', '@whatsapp_' || (g % 17) || ':bench',
                   $2::timestamptz + g * interval '1 minute',
                   'm.text', jsonb_build_object('msgtype', 'm.text', 'body', 'message ' || g),
                   'message ' || g, g
            FROM generate_series(1, $1) g
            """,
            total,
            datetime(2020, 1, 1, tzinfo=UTC),
            ROOMS,
            ROOMS[0],
        )
        await conn.execute("VACUUM ANALYZE messages")
    finally:
        await conn.close()


async def _time_query(url: str, sql: str, *args: Any, runs: int) -> list[float]:
    conn = await asyncpg.connect(url)
    try:
        times = []
        for _ in range(runs):
            began = time.perf_counter()
            await conn.fetch(sql, *args)
            times.append(time.perf_counter() - began)
        return times
    finally:
        await conn.close()


def _time_command(url: str, runs: int) -> list[float]:
    env = {
        **os.environ,
        "ARCHIVE_DB_URL": url,
        # status reads only the archive; the other two are required settings.
        "WHATSAPP_DB_URL": url,
        "SYNAPSE_DB_URL": url,
    }
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "listener", "status", "--json"],
            env=env, check=True, capture_output=True,
        )  # fmt: skip
        times.append(time.perf_counter() - began)
    return times


def _startup(runs: int) -> list[float]:
    """The CLI's own start (imports, settings) without any query: --help."""
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "listener", "--help"], check=True, capture_output=True
        )
        times.append(time.perf_counter() - began)
    return times


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="100000,1000000,5000000")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    common.check_local()
    results: dict[str, Any] = {"startup_s": common.median(_startup(args.runs))}
    for size in (int(s) for s in args.sizes.split(",")):
        name = common.unique("status")
        await common.admin_execute(f'CREATE DATABASE "{name}"')
        url = common.url_for(name)
        try:
            conn = await asyncpg.connect(url)
            try:
                await migrate.migrate(conn)
            finally:
                await conn.close()
            began = time.perf_counter()
            await _fill(url, size)
            fill_s = time.perf_counter() - began
            per_query = {
                q: common.median(await _time_query(url, queries.load(q), *params, runs=args.runs))
                for q, params in (
                    ("ops_state", (["bridge_cursor", "heartbeat"],)),
                    ("ops_failures_by_kind", ()),
                    ("ops_last_per_room", ()),
                )
            }
            before = common.median(await _time_query(url, BEFORE_0005, runs=args.runs))
            command = common.median(_time_command(url, args.runs))
        finally:
            await common.admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        results[str(size)] = {
            "fill_s": round(fill_s, 1),
            "status_command_s": round(command, 3),
            "queries_ms": {k: round(v * 1000, 2) for k, v in per_query.items()},
            "last_per_room_before_0005_ms": round(before * 1000, 2),
        }
    summary = {"machine": common.machine_info(), "code": common.code_fingerprint(), **results}
    human = "\n".join(
        f"{int(size):>9,} messages: status {r['status_command_s']} s (CLI start alone "
        f"{results['startup_s']:.2f} s); last message per room "
        f"{r['queries_ms']['ops_last_per_room']} ms "
        f"(before 0005: {r['last_per_room_before_0005_ms']} ms)"
        for size, r in results.items()
        if size != "startup_s"
    )
    common.emit("status", summary, human)


if __name__ == "__main__":
    asyncio.run(main())
