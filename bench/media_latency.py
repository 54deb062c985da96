"""Text latency while a 1 GiB video is being archived: does a big copy stall the text path?

Setup: a bridge database (bridge_v29 schema + ``sql/triggers.sql``), a Synapse-schema database
written by ``SqlSynapseWriter``, a migrated archive database, a media store and a
MEDIA_ARCHIVE_PATH on the same disk (``BENCH_MEDIA_DIR``, default the temp dir); all throwaway.

How it is measured:
* The **archiver** runs in this process as ``listener.service.Service`` (default settings but
  ``MEDIA_ARCHIVE_PATH``; uvloop like the CLI) with the ``on_archived(messages, committed_at)``
  hook: ``committed_at`` is ``time.time()`` right after the archive transaction committed.
* **Texts** come from a child process (``BridgeSimulator.send_text`` paced at ``--rate``; its
  CPU cannot stall the archiver's event loop), each with ``committed_at_s`` (``time.time()``
  right after the bridge INSERT). Latency = archive commit - bridge commit, by event ID.
* **Videos**: ``--videos`` distinct files of ``--video-mib`` random bytes laid out in the media
  store as Synapse does, each with its ``local_media_repository`` row (size and sha256), and an
  ``m.video`` event bridged through the simulator. They are sent one after another, after
  ``--idle-s`` of texts alone (the baseline); the next video is sent once the previous one's
  media row is ``stored``. The copy of each is timed around the blob store's ``ingest``.
* A text counts as "during a copy" when its bridge commit falls inside an ingest window.

    .venv/bin/python -m bench.media_latency              # 50 texts/s, 3 videos of 1 GiB
    .venv/bin/python -m bench.media_latency --quick      # 50 texts/s, 1 video of 256 MiB
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import random
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import psutil

from bench import common
from listener import service, settings
from listener.core import models
from listener.media import refs
from listener.sim import bridge as simulator
from listener.sim import synapse_writer

P99_TARGET_MS = 50.0
RSS_TARGET_MB = 150.0
SERVER = "example.org"


# -- the texts (child process) -----------------------------------------------------------------


async def _simulator(
    bridge_url: str, synapse_url: str, media_dir: Path, seed: int
) -> tuple[simulator.BridgeSimulator, list[asyncpg.Pool]]:
    bridge = await asyncpg.create_pool(bridge_url, min_size=1, max_size=2)
    synapse = await asyncpg.create_pool(synapse_url, min_size=1, max_size=2)
    rng = random.Random(seed)
    writer = synapse_writer.SqlSynapseWriter(
        synapse, server_name=SERVER, media_store_path=media_dir, rng=rng, thumbnails=False
    )
    sim = simulator.BridgeSimulator(bridge, writer, rng=rng)
    await sim.ensure_world(groups=2, dms=1)
    return sim, [bridge, synapse]


async def texts_child(args: argparse.Namespace) -> None:
    """``--texts-child``: READY after setup; on GO, texts at ``--rate`` until stdin closes."""
    sim, pools = await _simulator(args.bridge_url, args.synapse_url, Path(args.media_dir), 11)
    print("READY", flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.readline)
    stop = asyncio.Event()
    stdin_closed = loop.run_in_executor(None, sys.stdin.read)
    stdin_closed.add_done_callback(lambda _: stop.set())
    sent: list[dict[str, Any]] = []
    rng = random.Random(3)
    began = time.monotonic()
    while not stop.is_set():
        due = began + len(sent) / args.rate
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), max(0.0, due - time.monotonic()))
        if stop.is_set():
            break
        chat = rng.choice(sim.chats)
        message = await sim.send_text(chat, chat.members[0], f"text {len(sent)}")
        sent.append({"event_id": message.event_id, "committed_at_s": message.committed_at_s})
    for pool in pools:
        await pool.close()
    lines = "".join(json.dumps(s) + "\n" for s in sent)
    await asyncio.to_thread(Path(args.out).write_text, lines)
    print(f"DONE {len(sent)}", flush=True)


class Texts:
    """The text sender in its own process (own interpreter, own event loop)."""

    def __init__(self, args: argparse.Namespace, urls: dict[str, str], media_dir: Path) -> None:
        self._args, self._urls, self._media_dir = args, urls, media_dir
        self._out = Path(tempfile.mkstemp(prefix="bench-texts-", suffix=".jsonl")[1])
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.media_latency", "--texts-child",
            "--bridge-url", self._urls["bridge"], "--synapse-url", self._urls["synapse"],
            "--media-dir", str(self._media_dir), "--rate", str(self._args.rate),
            "--out", str(self._out),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, cwd=common.REPO,
        )  # fmt: skip
        assert self.proc.stdout is not None
        line = (await self.proc.stdout.readline()).decode().strip()
        if line != "READY":
            raise RuntimeError(f"text sender failed to start: {line!r}")

    async def go(self) -> None:
        assert self.proc is not None
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"GO\n")
        await self.proc.stdin.drain()

    async def stop(self) -> list[dict[str, Any]]:
        assert self.proc is not None
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.close()
        await self.proc.stdout.read()
        if await self.proc.wait() != 0:
            raise RuntimeError("text sender failed")
        rows = [json.loads(x) for x in self._out.read_text().splitlines()]
        self._out.unlink()
        return rows


# -- the videos ---------------------------------------------------------------------------------


def _write_random(path: Path, size: int) -> str:
    """A file of ``size`` random bytes; returns its SHA-256 (as Synapse records it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    with path.open("wb") as out:
        left = size
        while left:
            block = os.urandom(min(left, 4 << 20))
            digest.update(block)
            out.write(block)
            left -= len(block)
    return digest.hexdigest()


async def lay_out_video(synapse: asyncpg.Pool, store: Path, size: int, n: int) -> str:
    """A video in the media store with its ``local_media_repository`` row; returns its mxc."""
    media_id = f"BenchVideo{n:02d}" + "x" * 12
    sha256 = await asyncio.to_thread(_write_random, store / refs.local_content_path(media_id), size)
    await synapse.execute(
        synapse_writer.INSERT_MEDIA, media_id, "video/mp4", size, int(time.time() * 1000),
        f"video-{n}.mp4", "@whatsapp_bench:" + SERVER, sha256,
    )  # fmt: skip
    return f"mxc://{SERVER}/{media_id}"


async def send_video(sim: simulator.BridgeSimulator, mxc: str, size: int) -> str:
    """An m.video event for an already uploaded file, bridged as the simulator bridges media."""
    chat = sim.chats[0]
    media = simulator.Media("video", b"", "video/mp4", "big.mp4", "a long video", 1920, 1080)
    event_type, content = simulator.media_content(media, mxc)
    content["info"]["size"] = size
    # The simulator's own path (Matrix event, then the bridge row) minus its in-memory upload.
    draft = sim._draft(chat, chat.members[0], event_type, content, None, None, None)
    return (await sim._send(draft)).event_id


@dataclass
class Copies:
    """Wraps the blob store's ``ingest`` (an instance attribute) to time each copy."""

    windows: list[tuple[float, float]] = field(default_factory=list)

    def attach(self, svc: service.Service) -> None:
        assert svc.media is not None
        store = svc.media._store
        ingest = store.ingest

        async def timed(*args: Any, **kwargs: Any) -> Any:
            began = time.time()
            try:
                return await ingest(*args, **kwargs)
            finally:
                self.windows.append((began, time.time()))

        store.ingest = timed  # type: ignore[method-assign]


@dataclass
class Archived:
    at: dict[str, float] = field(default_factory=dict)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def hook(self, messages: list[models.ArchivedMessage], committed_at: float) -> None:
        for message in messages:
            self.at.setdefault(message.event_id, committed_at)
        self.changed.set()

    async def wait_for(self, event_ids: set[str], *, timeout_s: float) -> None:
        """Until every one of ``event_ids`` is archived, or ``timeout_s`` (then report)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                while not event_ids <= self.at.keys():
                    self.changed.clear()
                    await self.changed.wait()


class RssSampler:
    def __init__(self) -> None:
        self._process = psutil.Process()
        self.peak = self._process.memory_info().rss
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._sample(), name="rss-sampler")

    async def _sample(self) -> None:
        while True:
            self.peak = max(self.peak, self._process.memory_info().rss)
            await asyncio.sleep(0.02)

    async def stop(self) -> float:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        return self.peak / 2**20


async def _stored(archive: asyncpg.Pool, event_id: str) -> bool:
    status = await archive.fetchval("SELECT status FROM media WHERE event_id = $1", event_id)
    if status not in (None, "pending", "stored"):
        raise RuntimeError(f"video {event_id} ended {status}")
    return status == "stored"


async def videos(
    args: argparse.Namespace, svc: service.Service, sim: simulator.BridgeSimulator,
    archive: asyncpg.Pool, mxcs: list[str],
) -> list[dict[str, float]]:  # fmt: skip
    done = []
    for mxc in mxcs:
        sent_at = time.time()
        event_id = await send_video(sim, mxc, args.video_mib * 2**20)
        deadline = time.monotonic() + 300
        while not await _stored(archive, event_id):
            if time.monotonic() > deadline:
                raise RuntimeError(f"video {event_id} not stored after 300 s")
            await asyncio.sleep(0.05)
        done.append({"sent_at": sent_at, "stored_at": time.time()})
        await asyncio.sleep(args.gap_s)
    return done


# -- main ---------------------------------------------------------------------------------------


async def measure(args: argparse.Namespace, dbs: common.Databases, work: Path) -> dict[str, Any]:
    urls = {
        "bridge": (await dbs.bridge(trigger=True))[1],
        "synapse": (await dbs.synapse())[1],
        "archive": (await dbs.archive())[1],
    }
    store, root = work / "media_store", work / "archive"
    sim, pools = await _simulator(urls["bridge"], urls["synapse"], store, 7)
    archive = await asyncpg.create_pool(urls["archive"], min_size=1, max_size=2)
    size = args.video_mib * 2**20
    print(f"laying out {args.videos} x {args.video_mib} MiB ...", flush=True)
    mxcs = [await lay_out_video(pools[1], store, size, n) for n in range(args.videos)]
    await asyncio.to_thread(os.sync)  # the copies must not compete with the layout's write-back
    archived, copies = Archived(), Copies()
    config = settings.Settings(
        whatsapp_db_url=urls["bridge"],
        synapse_db_url=urls["synapse"],
        archive_db_url=urls["archive"],
        media_store_path=store,
        media_archive_path=root,
        log_level="WARNING",
    )
    svc = service.Service(config, on_archived=archived.hook)
    await svc.open()
    copies.attach(svc)
    task = asyncio.create_task(svc.run(), name="archiver")
    texts = Texts(args, urls, store)
    rss = RssSampler()
    try:
        await asyncio.wait_for(svc.ready.wait(), 10)
        await asyncio.wait_for(svc.listener.connected.wait(), 10)
        await texts.start()
        await texts.go()
        rss.start()
        await asyncio.sleep(args.idle_s)
        print(f"texts at {args.rate}/s; archiving the videos ...", flush=True)
        video_runs = await videos(args, svc, sim, archive, mxcs)
        sent = await texts.stop()
        peak_rss = await rss.stop()
        await archived.wait_for({s["event_id"] for s in sent}, timeout_s=30)
    finally:
        svc.stop_event.set()
        await asyncio.wait_for(task, 60)
        await svc.close()
        await archive.close()
        for pool in pools:
            await pool.close()
    if svc.crashed is not None:
        raise RuntimeError(f"archiver crashed: {svc.crashed!r}")
    return summarize(args, sent, archived, copies, video_runs, peak_rss)


def summarize(
    args: argparse.Namespace, sent: list[dict[str, Any]], archived: Archived, copies: Copies,
    video_runs: list[dict[str, float]], peak_rss: float,
) -> dict[str, Any]:  # fmt: skip
    first_video = video_runs[0]["sent_at"] if video_runs else float("inf")

    def copying(at: float) -> bool:
        return any(a <= at <= b for a, b in copies.windows)

    def latency(which: list[dict[str, Any]]) -> dict[str, float]:
        return common.summarize_ms(
            archived.at[s["event_id"]] - s["committed_at_s"]
            for s in which
            if s["event_id"] in archived.at
        )

    during = [s for s in sent if copying(s["committed_at_s"])]
    idle = [s for s in sent if s["committed_at_s"] < first_video]
    copy_s = [round(b - a, 3) for a, b in copies.windows]
    mib = args.video_mib
    return {
        "texts_sent": len(sent),
        "texts_archived": sum(1 for s in sent if s["event_id"] in archived.at),
        "latency_during_copies": latency(during),
        "latency_idle_baseline": latency(idle),
        "latency_all": latency(sent),
        "copy_s": copy_s,
        "copy_MiB_per_s": [round(mib / s, 1) for s in copy_s if s > 0],
        "video_event_to_stored_s": [round(v["stored_at"] - v["sent_at"], 3) for v in video_runs],
        "peak_rss_MiB": round(peak_rss, 1),
    }


def human(result: dict[str, Any]) -> str:
    r = result["result"]
    lines = [
        f"text latency bridge commit -> archive commit at {result['rate_per_s']:.0f} texts/s "
        f"while archiving {result['videos']} x {result['video_mib']} MiB videos "
        f"(MEDIA_WORKERS=2, simulator in a child process):"
    ]
    for key in ("latency_during_copies", "latency_idle_baseline", "latency_all"):
        v = r[key]
        lines.append(
            f"  {key}: n={v.get('n')} p50 {v.get('p50_ms')} ms, p90 {v.get('p90_ms')} ms, "
            f"p99 {v.get('p99_ms')} ms, max {v.get('max_ms')} ms"
        )
    lines.append(f"  copies (ingest): {r['copy_s']} s = {r['copy_MiB_per_s']} MiB/s")
    lines.append(f"  video event -> media row stored: {r['video_event_to_stored_s']} s")
    lines.append(f"  peak RSS of the archiver process: {r['peak_rss_MiB']} MiB")
    lines.extend(f"  target {t['name']}: {t['value']} -> {t['verdict']}" for t in result["targets"])
    return "\n".join(lines)


async def main(args: argparse.Namespace) -> None:
    result: dict[str, Any] = {
        "benchmark": "media_latency",
        "machine": common.machine_info(),
        "rate_per_s": args.rate,
        "videos": args.videos,
        "video_mib": args.video_mib,
        "idle_s": args.idle_s,
    }
    work = Path(tempfile.mkdtemp(prefix="bench-medialat-", dir=os.environ.get("BENCH_MEDIA_DIR")))
    try:
        async with common.databases() as dbs:
            result["result"] = await measure(args, dbs, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    p99 = result["result"]["latency_during_copies"].get("p99_ms", float("inf"))
    rss = result["result"]["peak_rss_MiB"] * 2**20 / 1e6
    result["targets"] = [
        {"name": f"text p99 during copies <= {P99_TARGET_MS} ms", "value": f"{p99} ms",
         "verdict": "met" if p99 <= P99_TARGET_MS else "MISSED"},
        {"name": f"peak RSS <= {RSS_TARGET_MB} MB", "value": f"{rss:.0f} MB",
         "verdict": "met" if rss <= RSS_TARGET_MB else "MISSED"},
    ]  # fmt: skip
    common.emit("media_latency", result, human(result))


def _run(coro: Any) -> None:
    try:
        import uvloop

        uvloop.run(coro)
    except ImportError:  # pragma: no cover
        asyncio.run(coro)


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 video of 256 MiB")
    parser.add_argument("--rate", type=float, default=50.0, help="texts per second")
    parser.add_argument("--videos", type=int, default=3)
    parser.add_argument("--video-mib", type=int, default=1024)
    parser.add_argument("--idle-s", type=float, default=5.0, help="texts alone first (baseline)")
    parser.add_argument("--gap-s", type=float, default=1.0, help="pause after each stored video")
    parser.add_argument("--texts-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--bridge-url", help=argparse.SUPPRESS)
    parser.add_argument("--synapse-url", help=argparse.SUPPRESS)
    parser.add_argument("--media-dir", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.texts_child:
        _run(texts_child(args))
        return
    if args.quick:
        args.videos, args.video_mib, args.idle_s = 1, 256, 3.0
    with contextlib.suppress(KeyboardInterrupt):
        _run(main(args))


if __name__ == "__main__":
    cli()
