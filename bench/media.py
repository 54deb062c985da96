"""Media copy throughput and memory: the MediaArchiver against ``cp`` of the same files.

Scenarios (files laid out as Synapse does, ``local_media_repository`` rows in a Synapse-schema
database, the archive schema in another, blobs under a temporary MEDIA_ARCHIVE_PATH on the same
disk as the media store):

  photos  1,000 small photos (100 KiB each by default): the full archiver (plan, copy, rows,
          jobs) with MEDIA_WORKERS=2, against one ``cp -r`` of the same files, and against
          ``cp -r`` followed by ``sync -f`` (our copies are fsynced, cp's are not).
  big     one 1 GiB file: the full archiver against ``cp`` (and ``cp`` + ``sync -f``), with
          the peak RSS of this process sampled every 20 ms while the archiver copies.

Runs alternate (cp, cp + sync, archiver) ``--rounds`` times; every run writes to a fresh
directory and starts after an (untimed) ``sync`` so that no run pays for the write-back of the
one before; the source files are read once beforehand so every run reads from the page cache.

    .venv/bin/python -m bench.media              # full: 3 rounds, 1,000 photos, 1 GiB
    .venv/bin/python -m bench.media --quick      # smoke: 1 round, 200 photos, 128 MiB
    .venv/bin/python -m bench.media --workers 8  # more copy slots (fsyncs overlap)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import resource
import shutil
import string
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg
import psutil

from bench import common
from listener import blobstore, media, media_refs, media_source, pg_media_sink

SERVER = "bench.example"
INSERT = (
    "INSERT INTO local_media_repository (media_id, media_type, media_length, created_ts,"
    " upload_name, user_id) SELECT * FROM unnest($1::text[], $2::text[], $3::int[],"
    " $4::bigint[], $5::text[], $6::text[])"
)


def _media_id(rng: random.Random) -> str:
    return "".join(rng.choices(string.ascii_letters, k=24))


def _write_random(path: Path, size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as out:
        left = size
        while left:
            n = min(left, 4 << 20)
            out.write(os.urandom(n))
            left -= n


async def _lay_out(
    pool: asyncpg.Pool, store: Path, sizes: list[int], rng: random.Random
) -> list[str]:
    ids = [_media_id(rng) for _ in sizes]
    for media_id, size in zip(ids, sizes, strict=True):
        _write_random(store / media_refs.local_content_path(media_id), size)
    n = len(ids)
    await pool.execute(
        INSERT, ids, ["image/jpeg"] * n, sizes, [1_700_000_000_000] * n,
        [f"{i}.jpg" for i in ids], ["@whatsapp_1:" + SERVER] * n,
    )  # fmt: skip
    _warm(store)
    return ids


def _warm(store: Path) -> None:
    for path in store.rglob("*"):
        if path.is_file():
            with path.open("rb") as src:
                while src.read(8 << 20):
                    pass


def _cp(source: Path, target: Path, *, sync: bool) -> float:
    start = time.perf_counter()
    subprocess.run(["cp", "-r", str(source), str(target)], check=True)
    if sync:
        subprocess.run(["sync", "-f", str(target)], check=True)
    return time.perf_counter() - start


async def _archive(
    synapse: asyncpg.Pool,
    archive: asyncpg.Pool,
    store: Path,
    root: Path,
    ids: list[str],
    workers: int,
) -> tuple[float, float]:
    """Seconds to archive one message per media ID, and the peak RSS (MiB) meanwhile."""
    archiver = media.MediaArchiver(
        source=media_source.MediaSource(synapse),
        sink=pg_media_sink.PgMediaSink(archive),
        store=blobstore.LocalBlobStore(root),
        media_store_path=store,
        server_name=SERVER,
        workers=workers,
    )
    messages = [
        media.MediaMessage(
            f"${root.name}-{i}",
            "m.room.message",
            {"msgtype": "m.image", "url": f"mxc://{SERVER}/{i}"},
        )
        for i in ids
    ]
    process = psutil.Process()
    peak = process.memory_info().rss
    done = asyncio.Event()

    async def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, process.memory_info().rss)
            await asyncio.sleep(0.02)

    sampler = asyncio.create_task(sample())
    start = time.perf_counter()
    outcome = await archiver.process(messages)
    elapsed = time.perf_counter() - start
    done.set()
    await sampler
    if outcome["stored"] != len(ids):
        raise SystemExit(f"archiver did not store everything: {dict(outcome)}")
    return elapsed, peak / 2**20


async def _scenario(
    name: str, sizes: list[int], rounds: int, dbs: common.Databases, work: Path, workers: int
) -> dict[str, Any]:
    _, synapse_url = await dbs.synapse()
    _, archive_url = await dbs.archive()
    synapse = await asyncpg.create_pool(synapse_url, min_size=1, max_size=4)
    archive = await asyncpg.create_pool(archive_url, min_size=1, max_size=4)
    store = work / f"{name}-media_store"
    try:
        ids = await _lay_out(synapse, store, sizes, random.Random(7))
        results: dict[str, list[float]] = {"cp": [], "cp_sync": [], "archiver": [], "rss": []}
        for n in range(rounds):
            # Each run starts with no dirty pages: otherwise the next run pays for the
            # previous one's write-back (cp leaves all of it; the first run, the layout's).
            os.sync()
            results["cp"].append(_cp(store, work / f"{name}-cp-{n}", sync=False))
            os.sync()
            results["cp_sync"].append(_cp(store, work / f"{name}-cps-{n}", sync=True))
            os.sync()
            root = work / f"{name}-arc-{n}"
            seconds, rss = await _archive(synapse, archive, store, root, ids, workers)
            results["archiver"].append(seconds)
            results["rss"].append(rss)
            for leftover in (f"{name}-cp-{n}", f"{name}-cps-{n}", f"{name}-arc-{n}"):
                shutil.rmtree(work / leftover)
    finally:
        await synapse.close()
        await archive.close()
    total = sum(sizes)
    med = {k: common.median(v) for k, v in results.items()}
    return {
        "files": len(sizes),
        "workers": workers,
        "bytes": total,
        "median_s": {k: round(v, 3) for k, v in med.items() if k != "rss"},
        "archiver_MiB_per_s": round(total / 2**20 / med["archiver"], 1),
        "cp_MiB_per_s": round(total / 2**20 / med["cp"], 1),
        "ratio_vs_cp": round(med["cp"] / med["archiver"], 2),
        "ratio_vs_cp_sync": round(med["cp_sync"] / med["archiver"], 2),
        "peak_rss_MiB": round(max(results["rss"]), 1),
        "runs": results,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--photos", type=int)
    parser.add_argument("--photo-kib", type=int, default=100)
    parser.add_argument("--big-mib", type=int)
    parser.add_argument("--workers", type=int, default=2, help="MEDIA_WORKERS")
    args = parser.parse_args()
    rounds = args.rounds or (1 if args.quick else 3)
    photos = args.photos or (200 if args.quick else 1000)
    big_mib = args.big_mib or (128 if args.quick else 1024)
    summary: dict[str, Any] = {"machine": common.machine_info(), "rounds": rounds}
    work = Path(tempfile.mkdtemp(prefix="bench-media-", dir=os.environ.get("BENCH_MEDIA_DIR")))
    try:
        async with common.databases() as dbs:
            summary["photos"] = await _scenario(
                "photos", [args.photo_kib * 1024] * photos, rounds, dbs, work, args.workers
            )
            summary["big"] = await _scenario(
                "big", [big_mib * 2**20], rounds, dbs, work, args.workers
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    summary["ru_maxrss_MiB"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    lines = []
    for name in ("photos", "big"):
        s = summary[name]
        lines.append(
            f"{name}: {s['files']} files, {s['bytes'] / 2**20:.0f} MiB, "
            f"MEDIA_WORKERS={s['workers']}: archiver "
            f"{s['median_s']['archiver']:.2f} s ({s['archiver_MiB_per_s']} MiB/s), cp "
            f"{s['median_s']['cp']:.2f} s, cp+sync {s['median_s']['cp_sync']:.2f} s -> ratio "
            f"{s['ratio_vs_cp']} vs cp, {s['ratio_vs_cp_sync']} vs cp+sync; "
            f"peak RSS {s['peak_rss_MiB']} MiB"
        )
    common.emit("media", summary, "\n".join(lines))


if __name__ == "__main__":
    asyncio.run(main())
