"""The viewer and the export at size: one chat of 1M messages (and a 100k one), in one run.

- chat pages: server time of ``GET /chat`` (the ASGI app in this process, real PostgreSQL),
  newest page, pages before random cursors, random jump-to-dates and permalinks, all through the
  1M chat: p50/p95;
- search: p50/p95 over rare words, common words, phrases, prefixes, in the chat and in all;
- export: ``archiver-db export --format html`` of the 100k chat as a subprocess: wall time and
  peak RSS (the child's ru_maxrss).

The archive is written with SQL (``generate_series``) in the real schema, through the migration's
triggers (room_stats) and indexes, then ANALYZEd.

    python -m bench.viewer [--messages 1000000] [--export-messages 100000] [--requests 200]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import asyncpg
import httpx

from bench import common
from listener.schema import migrate
from listener.viewer import app as viewer_app
from listener.viewer import media_files, reader

BIG = "!big:bench.example"
EXPORTED = "!export:bench.example"
TOKEN = "bench-viewer-token-0123456789"
START = datetime(2019, 1, 1, tzinfo=UTC)
STEP_S = 120  # a message every two minutes: 1M messages span about four years
WORDS = [
    "hello",
    "see",
    "you",
    "tomorrow",
    "café",
    "meeting",
    "late",
    "thanks",
    "photo",
    "good",
    "morning",
    "night",
    "trip",
    "climbing",
    "rope",
    "weather",
    "rain",
    "sunday",
    "saturday",
    "dinner",
    "lunch",
    "coffee",
    "work",
    "home",
    "train",
    "station",
    "birthday",
    "party",
    "gift",
    "crème",
    "brûlée",
    "naïve",
    "façade",
    "über",
    "straße",
    "niño",
    "jalapeño",
    "mañana",
]
RARE = "zanzibar"  # one message in 10,000


async def _fill(url: str, room: str, count: int, *, stream_offset: int) -> None:
    conn = await asyncpg.connect(url)
    try:
        # Bodies of 6-14 words drawn from the vocabulary by the row number: deterministic,
        # different per message, a rare word every 10,000th.
        await conn.execute(
            f"""
            INSERT INTO messages (event_id, room_id, room_name, sender, sender_display_name,
                "timestamp", message_type, content, body, synapse_stream_ordering,
                reply_to_event_id)
            SELECT '$' || $1::text || g, $1, $2, '@whatsapp_' || (g % 23) || ':bench.example',
                   'Member ' || (g % 23), $3::timestamptz + g * interval '{STEP_S} seconds',
                   'm.text', jsonb_build_object('msgtype', 'm.text', 'body', b.body), b.body,
                   $4 + g,
                   CASE WHEN g % 7 = 0 AND g > 10 THEN '$' || $1::text || (g - 3) END
            FROM generate_series(1, $5) g
            CROSS JOIN LATERAL (
                SELECT string_agg(($6::text[])[1 + ((g::bigint * 7919 + i * 104729) % $7)], ' ')
                       || CASE WHEN g % 10000 = 0 THEN ' {RARE}' ELSE '' END AS body
                FROM generate_series(1, 6 + g % 9) i
            ) b
            """,
            room,
            room.split(":")[0].lstrip("!").title() + " chat",
            START,
            stream_offset,
            count,
            list(WORDS),
            len(WORDS),
        )
    finally:
        await conn.close()


async def _timed(client: httpx.AsyncClient, url: str) -> float:
    began = time.perf_counter()
    response = await client.get(url)
    elapsed = time.perf_counter() - began
    if response.status_code != 200:
        raise SystemExit(f"GET {url} answered {response.status_code}")
    return elapsed


async def _pages(client: httpx.AsyncClient, count: int, n: int) -> dict[str, Any]:
    rng = random.Random(2026)
    times: dict[str, list[float]] = {"newest": [], "before": [], "date": [], "at": []}
    for _ in range(max(3, n // 20)):
        times["newest"].append(await _timed(client, "/chat?" + urlencode({"room": BIG})))
    for _ in range(n):
        g = rng.randrange(200, count)
        kind = rng.choice(("before", "date", "at"))
        if kind == "date":
            day = (START + timedelta(seconds=STEP_S * g)).date().isoformat()
            params = {"room": BIG, "date": day}
        else:
            params = {"room": BIG, kind: f"${BIG}{g}"}  # the event IDs _fill writes
        times[kind].append(await _timed(client, "/chat?" + urlencode(params)))
    everything = [t for values in times.values() for t in values]
    out = {k: common.summarize_ms(v) for k, v in times.items()}
    out["all"] = common.summarize_ms(everything)
    out["all"]["p95_ms"] = round(common.quantile(sorted(t * 1000 for t in everything), 0.95), 3)
    return out


async def _search(client: httpx.AsyncClient, n: int) -> dict[str, Any]:
    rng = random.Random(7)
    queries = [RARE, "cafe", "creme brulee", '"see you tomorrow"', "clim*", "good -morning",
               "station OR train", "naive", "strasse", "jalapeno manana"]  # fmt: skip
    times = []
    for i in range(n):
        q = queries[i % len(queries)]
        params = {"q": q} | ({"room": BIG} if rng.random() < 0.5 else {})
        times.append(await _timed(client, "/search?" + urlencode(params)))
    summary = common.summarize_ms(times)
    summary["p95_ms"] = round(common.quantile(sorted(t * 1000 for t in times), 0.95), 3)
    summary["queries"] = queries
    return summary


def _export(url: str, out: Path) -> dict[str, Any]:
    env = {**os.environ, "ARCHIVE_DB_URL": url}
    began = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "listener", "export", "--out", str(out), "--room", EXPORTED,
         "--format", "html", "--media", "none"],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    wall = time.perf_counter() - began
    if result.returncode != 0:
        raise SystemExit(f"export failed: {result.stderr[-2000:]}")
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    pages = len(list(out.glob("chats/*/*.html")))
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    return {
        "wall_s": round(wall, 2),
        "peak_rss_mb": round(peak_kib / 1024, 1),
        "html_files": pages,
        "bytes": size,
        "stderr_tail": result.stderr.strip().splitlines()[-1:],
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--export-messages", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    common.check_local()
    name = common.unique("viewer")
    await common.admin_execute(f'CREATE DATABASE "{name}"')
    url = common.url_for(name)
    try:
        conn = await asyncpg.connect(url)
        try:
            await migrate.migrate(conn)
        finally:
            await conn.close()
        began = time.perf_counter()
        await _fill(url, BIG, args.messages, stream_offset=0)
        await _fill(url, EXPORTED, args.export_messages, stream_offset=10 * args.messages)
        fill_s = time.perf_counter() - began
        conn = await asyncpg.connect(url)
        try:
            await conn.execute("VACUUM ANALYZE messages")
            stats = await conn.fetch("SELECT room_id, message_count FROM room_stats")
        finally:
            await conn.close()
        pool = await asyncpg.create_pool(url, min_size=1, max_size=4)
        try:
            app = viewer_app.build(
                reader.ArchiveReader(pool),
                media_files.LocalMediaFiles(Path(tempfile.gettempdir())),
                token=TOKEN,
                zone=UTC,
                page_size=100,
            )
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app),
                base_url="http://bench",
                headers={"Authorization": f"Bearer {TOKEN}"},
            ) as client:
                await _timed(client, "/")  # warm the pool and the templates
                chats = await _timed(client, "/")
                pages = await _pages(client, args.messages, args.requests)
                search = await _search(client, max(20, args.requests // 4))
        finally:
            await pool.close()
        with tempfile.TemporaryDirectory(prefix="bench-export-") as out:
            export = _export(url, Path(out) / "export")
    finally:
        await common.admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    summary = {
        "machine": common.machine_info(),
        "code": common.code_fingerprint(),
        "messages": args.messages,
        "export_messages": args.export_messages,
        "fill_s": round(fill_s, 1),
        "room_stats": {r["room_id"]: r["message_count"] for r in stats},
        "chat_list_ms": round(chats * 1000, 2),
        "chat_pages": pages,
        "search": search,
        "export": export,
    }
    human = (
        f"1 chat of {args.messages:,} messages: chat page p50 {pages['all']['p50_ms']} ms, "
        f"p95 {pages['all']['p95_ms']} ms (target ≤ 100), max {pages['all']['max_ms']} ms "
        f"over {pages['all']['n']} requests; search p50 {search['p50_ms']} ms, "
        f"p95 {search['p95_ms']} ms (target ≤ 200); export of {args.export_messages:,} "
        f"messages to HTML {export['wall_s']} s (target ≤ 30), peak RSS "
        f"{export['peak_rss_mb']} MB (target ≤ 200), {export['html_files']} files"
    )
    common.emit("viewer", summary, human)


if __name__ == "__main__":
    asyncio.run(main())
