"""Media copy throughput and memory: the MediaArchiver against ``cp`` of the same files.

Scenarios (files laid out as Synapse does, ``local_media_repository`` rows in a Synapse-schema
database, the archive schema in another, blobs under a temporary MEDIA_ARCHIVE_PATH on the same
disk as the media store):

  photos  1,000 small photos (100 KiB each by default): the full archiver (plan, copy, rows,
          jobs) with the service's default copy slots, against one ``cp -r`` of the same
          files, and against ``cp -r`` followed by ``sync -f`` (our copies are durable, cp's
          are not).
  big     one 1 GiB file: the full archiver against ``cp`` (and ``cp`` + ``sync -f``), with
          the peak RSS of this process sampled every 20 ms while the archiver copies.

Runs alternate (cp, cp + sync, archiver, in an order that rotates each round) ``--rounds``
times; every run writes to a fresh directory, deleted right after it, and starts after an
(untimed) ``sync`` so that no run pays for the write-back of the one before. By default the
source files are read once beforehand so every run reads from the page cache (media Synapse
has just written); ``--cold`` evicts the page cache before every run (needs root) so every
run reads its sources from the disk.

    .venv/bin/python -m bench.media              # full: 3 rounds, 1,000 photos, 1 GiB
    .venv/bin/python -m bench.media --quick      # smoke: 1 round, 200 photos, 128 MiB
    .venv/bin/python -m bench.media --workers 4 --small-file-workers 16  # more copy slots
    sudo .venv/bin/python -m bench.media --cold  # sources read from disk
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import psutil

from bench import common
from listener.media import archiver as media
from listener.media import blobstore, refs
from listener.media import source as media_source
from listener.sinks import postgres_media

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
        _write_random(store / refs.local_content_path(media_id), size)
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


@dataclass(frozen=True)
class Run:
    seconds: float
    peak_rss_mib: float
    layout_s: float  # creating the archive's shard directories (once per archive; untimed)
    flushes: int  # group flushes the blobs shared


def _drop_caches() -> None:
    """Write back, then evict the page cache, so the next run reads its sources from disk."""
    os.sync()
    Path("/proc/sys/vm/drop_caches").write_text("3\n")


async def _archive(
    synapse: asyncpg.Pool,
    archive: asyncpg.Pool,
    store: Path,
    root: Path,
    ids: list[str],
    workers: int,
) -> tuple[float, float]:
    """Archive one message per media ID: seconds, peak RSS (MiB) meanwhile, flushes."""
    blobs = blobstore.LocalBlobStore(root)
    # The archive's 256 shard directories are created once in its lifetime (the service does
    # it at start); timed separately so the copy throughput is that of a running archive.
    layout_start = time.perf_counter()
    await blobs.open()
    layout_s = time.perf_counter() - layout_start
    archiver = media.MediaArchiver(
        source=media_source.MediaSource(synapse),
        sink=postgres_media.PgMediaSink(archive),
        store=blobs,
        media_store_path=store,
        server_name=SERVER,
        workers=workers[0],
        small_file_workers=workers[1],
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
    return Run(elapsed, peak / 2**20, layout_s, blobs.flushes)


async def _scenario(
    name: str,
    sizes: list[int],
    rounds: int,
    dbs: common.Databases,
    work: Path,
    workers: tuple[int, int],
    cold: bool,
) -> dict[str, Any]:
    _, synapse_url = await dbs.synapse()
    _, archive_url = await dbs.archive()
    synapse = await asyncpg.create_pool(synapse_url, min_size=1, max_size=4)
    archive = await asyncpg.create_pool(archive_url, min_size=1, max_size=4)
    store = work / f"{name}-media_store"
    try:
        ids = await _lay_out(synapse, store, sizes, random.Random(7))
        results: dict[str, list[float]] = {
            "cp": [], "cp_sync": [], "archiver": [], "rss": [], "layout_s": [], "flushes": []
        }  # fmt: skip
        # Each run starts with no dirty pages (otherwise it pays for the previous run's
        # write-back: cp leaves all of it) and, with --cold, with nothing in the page cache.
        settle = _drop_caches if cold else os.sync
        runs = ["cp", "cp_sync", "archiver"]
        for n in range(rounds):
            # The order rotates each round and every run's output is deleted right after it:
            # this disk's write speed depends on what was written and freed just before (up
            # to 3x, seen here), so no contender may always follow the same predecessor.
            for which in runs[n % 3 :] + runs[: n % 3]:
                settle()
                target = work / f"{name}-{which}-{n}"
                if which == "archiver":
                    run = await _archive(synapse, archive, store, target, ids, workers)
                    results["archiver"].append(run.seconds)
                    results["rss"].append(run.peak_rss_mib)
                    results["layout_s"].append(run.layout_s)
                    results["flushes"].append(run.flushes)
                else:
                    results[which].append(_cp(store, target, sync=which == "cp_sync"))
                shutil.rmtree(target)
    finally:
        await synapse.close()
        await archive.close()
    total = sum(sizes)
    med = {k: common.median(v) for k, v in results.items()}
    return {
        "files": len(sizes),
        "workers": workers[0],
        "small_file_workers": workers[1],
        "page_cache": "cold" if cold else "warm",
        "bytes": total,
        "median_s": {k: round(v, 3) for k, v in med.items() if k in ("cp", "cp_sync", "archiver")},
        "layout_median_s": round(med["layout_s"], 3),
        "flushes_median": med["flushes"],
        "archiver_MiB_per_s": round(total / 2**20 / med["archiver"], 1),
        "cp_MiB_per_s": round(total / 2**20 / med["cp"], 1),
        "ratio_vs_cp": round(med["cp"] / med["archiver"], 2),
        "ratio_vs_cp_sync": round(med["cp_sync"] / med["archiver"], 2),
        # The disk's speed drifts by 5x within minutes here; a round's runs are adjacent in
        # time, so the median of per-round ratios is the steadier estimate.
        "round_ratio_vs_cp": round(_median_ratio(results["cp"], results["archiver"]), 2),
        "round_ratio_vs_cp_sync": round(_median_ratio(results["cp_sync"], results["archiver"]), 2),
        "peak_rss_MiB": round(max(results["rss"]), 1),
        "runs": results,
    }


def _median_ratio(baseline: list[float], archiver: list[float]) -> float:
    return common.median([b / a for b, a in zip(baseline, archiver, strict=True)])


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--photos", type=int)
    parser.add_argument("--photo-kib", type=int, default=100)
    parser.add_argument("--big-mib", type=int)
    parser.add_argument("--workers", type=int, default=2, help="MEDIA_WORKERS")
    parser.add_argument(
        "--small-file-workers", type=int, default=8, help="MEDIA_SMALL_FILE_WORKERS"
    )
    parser.add_argument(
        "--cold",
        action="store_true",
        help="evict the page cache before every run (root): sources are read from disk",
    )
    args = parser.parse_args()
    rounds = args.rounds or (1 if args.quick else 3)
    photos = args.photos or (200 if args.quick else 1000)
    big_mib = args.big_mib or (128 if args.quick else 1024)
    summary: dict[str, Any] = {"machine": common.machine_info(), "rounds": rounds}
    work = Path(tempfile.mkdtemp(prefix="bench-media-", dir=os.environ.get("BENCH_MEDIA_DIR")))
    try:
        async with common.databases() as dbs:
            summary["photos"] = await _scenario(
                "photos",
                [args.photo_kib * 1024] * photos,
                rounds,
                dbs,
                work,
                (args.workers, args.small_file_workers),
                args.cold,
            )
            summary["big"] = await _scenario(
                "big",
                [big_mib * 2**20],
                rounds,
                dbs,
                work,
                (args.workers, args.small_file_workers),
                args.cold,
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    summary["ru_maxrss_MiB"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    lines = []
    for name in ("photos", "big"):
        s = summary[name]
        lines.append(
            f"{name}: {s['files']} files, {s['bytes'] / 2**20:.0f} MiB, "
            f"MEDIA_WORKERS={s['workers']}, MEDIA_SMALL_FILE_WORKERS="
            f"{s['small_file_workers']}, {s['page_cache']} cache: archiver "
            f"{s['median_s']['archiver']:.2f} s ({s['archiver_MiB_per_s']} MiB/s), cp "
            f"{s['median_s']['cp']:.2f} s, cp+sync {s['median_s']['cp_sync']:.2f} s -> ratio "
            f"of medians {s['ratio_vs_cp']} vs cp, {s['ratio_vs_cp_sync']} vs cp+sync; median "
            f"per-round ratio {s['round_ratio_vs_cp']} vs cp, {s['round_ratio_vs_cp_sync']} "
            "vs cp+sync; "
            f"peak RSS {s['peak_rss_MiB']} MiB; {s['flushes_median']:.0f} group flushes; "
            f"shard layout {s['layout_median_s']:.3f} s (untimed)"
        )
    common.emit("media", summary, "\n".join(lines))


if __name__ == "__main__":
    asyncio.run(main())
