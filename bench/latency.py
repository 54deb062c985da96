"""Latency from the bridge's commit to the archive's commit, at a steady message rate.

Setup: a bridge database (bridge_v29 schema + ``sql/triggers.sql`` via psql), a Synapse-schema
database written directly by ``SqlSynapseWriter``, a migrated archive database; all throwaway.

How it is measured:
* The **archiver** runs in this process as ``listener.service.Service`` (default settings: 4
  workers, batch 100, sweep every 5 s, uvloop like the CLI) with the ``on_archived(messages,
  committed_at)`` hook: ``committed_at`` is ``time.time()`` right after the archive transaction
  committed.
* The **bridge simulator** (``BridgeSimulator.run_traffic``: realistic mix of texts, replies,
  media with thumbnails, messages typed in Matrix; the Matrix event first, then the autocommit
  bridge INSERT) runs in a *child process*, so its CPU work (JSON, hashing, PNG thumbnails, file
  writes) cannot stall the archiver's event loop and inflate the numbers. It reports each
  message's ``committed_at_s`` (``time.time()`` right after the bridge INSERT returned). Same
  host, same clock. Matched by Matrix event ID.
* The **floor** is the same traffic against a bare asyncpg LISTEN connection (no archiver):
  bridge commit -> NOTIFY received in Python, matched by rowid ranges.

The first ``--warmup-s`` seconds of traffic (pools growing, statements being prepared) are
reported separately and left out of the headline numbers.

    .venv/bin/python -m bench.latency                 # full: 100 msg/s for 60 s (+ 30 s floor)
    .venv/bin/python -m bench.latency --quick         # smoke: 50 msg/s for 5 s
    .venv/bin/python -m bench.latency --sim-inproc    # simulator in the archiver's event loop
    .venv/bin/python -m bench.latency --compare-e2ee  # clear portals, then encrypted ones
                                                      # (Megolm, BRIDGE_PICKLE_KEY), same run
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

from bench import common
from listener import service, settings
from listener.core import models
from listener.sim import bridge as simulator
from listener.sim import megolm, synapse_writer

P50_TARGET_MS = 5.0
P99_TARGET_MS = 25.0


@dataclass
class Sent:
    rowid: int
    event_id: str
    committed_at_s: float
    warmup: bool


# -- the traffic (child process, or in-process with --sim-inproc) ------------------------------


PICKLE_KEY = "bench-latency-pickle-key"


async def make_simulator(
    bridge_url: str, synapse_url: str, media_dir: Path, seed: int, *, encrypted: bool = False
) -> tuple[simulator.BridgeSimulator, list[asyncpg.Pool]]:
    bridge = await asyncpg.create_pool(bridge_url, min_size=1, max_size=2)
    synapse = await asyncpg.create_pool(synapse_url, min_size=1, max_size=2)
    rng = random.Random(seed)
    writer = synapse_writer.SqlSynapseWriter(
        synapse, server_name="example.org", media_store_path=media_dir, rng=rng
    )
    sim = simulator.BridgeSimulator(bridge, writer, rng=rng)
    await sim.ensure_world()
    if encrypted:  # every portal encrypted; the bridge stores each room's session first
        sim.encrypted_rooms.update(chat.room_id for chat in sim.chats)
        for chat in sim.chats:
            session = sim.encryptor.session(chat.room_id)
            await megolm.store_session(bridge, session, PICKLE_KEY.encode())
    return sim, [bridge, synapse]


async def traffic(
    sim: simulator.BridgeSimulator, rate: float, warmup_s: float, duration_s: float
) -> list[Sent]:
    sent: list[Sent] = []
    for phase_s, warm in ((warmup_s, True), (duration_s, False)):
        if phase_s <= 0:
            continue
        messages = await sim.run_traffic(rate, phase_s)
        sent.extend(Sent(m.rowid, m.event_id, m.committed_at_s, warm) for m in messages)
    return sent


async def traffic_child(args: argparse.Namespace) -> None:
    """``--traffic-child``: print READY after setup, wait for GO, send, write JSON lines."""
    with tempfile.TemporaryDirectory(prefix="bench-media-") as media:
        sim, pools = await make_simulator(
            args.bridge_url, args.synapse_url, Path(media), 7, encrypted=args.encrypted
        )
        print("READY", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        sent = await traffic(sim, args.rate, args.warmup_s, args.duration_s)
        for pool in pools:
            await pool.close()
    Path(args.out).write_text("".join(json.dumps(s.__dict__) + "\n" for s in sent))  # noqa: ASYNC240
    print(f"DONE {len(sent)}", flush=True)


class TrafficProcess:
    """The simulator in its own process (own interpreter, own event loop)."""

    def __init__(self, args: argparse.Namespace, bridge_url: str, synapse_url: str) -> None:
        self._args = args
        self._urls = (bridge_url, synapse_url)
        self._out = Path(tempfile.mkstemp(prefix="bench-sent-", suffix=".jsonl")[1])
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        a = self._args
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.latency",
            "--traffic-child",
            "--bridge-url",
            self._urls[0],
            "--synapse-url",
            self._urls[1],
            "--rate",
            str(a.rate),
            "--warmup-s",
            str(a.warmup_s),
            "--duration-s",
            str(a.duration_s),
            "--out",
            str(self._out),
            *(["--encrypted"] if a.encrypted else []),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            cwd=common.REPO,
        )
        assert self.proc.stdout is not None
        line = (await self.proc.stdout.readline()).decode().strip()
        if line != "READY":
            raise RuntimeError(f"traffic child failed to start: {line!r}")

    async def run(self) -> list[Sent]:
        assert self.proc is not None
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.write(b"GO\n")
        await self.proc.stdin.drain()
        await self.proc.stdout.read()
        if await self.proc.wait() != 0:
            raise RuntimeError("traffic child failed")
        rows = [json.loads(x) for x in self._out.read_text().splitlines()]
        self._out.unlink()
        return [Sent(**r) for r in rows]


# -- the floor: bare LISTEN ---------------------------------------------------------------------


async def measure_floor(
    args: argparse.Namespace, bridge_url: str, synapse_url: str
) -> dict[str, Any]:
    received: list[tuple[float, str]] = []
    conn = await asyncpg.connect(bridge_url, server_settings={"application_name": "bench-floor"})
    await conn.add_listener(
        "archiver_db", lambda _c, _p, _ch, payload: received.append((time.time(), payload))
    )
    floor_args = argparse.Namespace(**{**vars(args), "duration_s": args.floor_s})
    child = TrafficProcess(floor_args, bridge_url, synapse_url)
    await child.start()
    sent = await child.run()
    await asyncio.sleep(0.5)
    await conn.close()
    notified: dict[int, float] = {}
    for at, payload in received:
        for lo, hi in json.loads(payload)["ranges"]:
            for rowid in range(lo, hi + 1):
                notified.setdefault(rowid, at)
    steady = [s for s in sent if not s.warmup]
    lat = [notified[s.rowid] - s.committed_at_s for s in steady if s.rowid in notified]
    return {
        "messages": len(steady),
        "notified": len(lat),
        "latency": common.summarize_ms(lat),
    }


# -- the archiver --------------------------------------------------------------------------------


@dataclass
class Archived:
    at: dict[str, float] = field(default_factory=dict)
    batch_sizes: list[int] = field(default_factory=list)

    def hook(self, messages: list[models.ArchivedMessage], committed_at: float) -> None:
        self.batch_sizes.append(len(messages))
        for message in messages:
            self.at.setdefault(message.event_id, committed_at)


async def measure_archiver(
    args: argparse.Namespace, urls: dict[str, str], media: Path
) -> dict[str, Any]:
    archived = Archived()
    config = settings.Settings(
        whatsapp_db_url=urls["bridge"],
        synapse_db_url=urls["synapse"],
        archive_db_url=urls["archive"],
        media_store_path=media,
        log_level="WARNING",
        bridge_pickle_key=PICKLE_KEY if args.encrypted else None,
    )
    svc = service.Service(config, on_archived=archived.hook)
    await svc.open()
    stages = Stages.attach(svc)
    task = asyncio.create_task(svc.run(), name="archiver")
    try:
        await asyncio.wait_for(svc.ready.wait(), 10)
        await asyncio.wait_for(svc.listener.connected.wait(), 10)
        if args.sim_inproc:
            sim, pools = await make_simulator(
                urls["bridge"], urls["synapse"], media, 7, encrypted=args.encrypted
            )
            started = time.time()
            sent = await traffic(sim, args.rate, args.warmup_s, args.duration_s)
            for pool in pools:
                await pool.close()
        else:
            child = TrafficProcess(args, urls["bridge"], urls["synapse"])
            await child.start()
            started = time.time()
            sent = await child.run()
        wall_s = time.time() - started
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(  # noqa: ASYNC110 - polls what a hook fills
            s.event_id not in archived.at for s in sent
        ):
            await asyncio.sleep(0.05)
    finally:
        svc.stop_event.set()
        await asyncio.wait_for(task, 60)
        await svc.close()
    if svc.crashed is not None:
        raise RuntimeError(f"archiver crashed: {svc.crashed!r}")
    result = summarize_archiver(sent, archived, svc, wall_s)
    result["stages"] = stages.summary(sent, archived)
    return result


def summarize_archiver(
    sent: list[Sent], archived: Archived, svc: service.Service, wall_s: float
) -> dict[str, Any]:
    def lat(items: list[Sent]) -> list[float]:
        return [
            archived.at[s.event_id] - s.committed_at_s for s in items if s.event_id in archived.at
        ]

    steady = [s for s in sent if not s.warmup]
    warm = [s for s in sent if s.warmup]
    steady_lat = lat(steady)
    m = svc.metrics
    sizes = sorted(archived.batch_sizes)
    return {
        "messages_sent": len(sent),
        "messages_steady": len(steady),
        "achieved_rate_per_s": round(len(sent) / wall_s, 1) if wall_s else None,
        "archived": sum(1 for s in sent if s.event_id in archived.at),
        "missing": [s.event_id for s in sent if s.event_id not in archived.at][:10],
        "latency": common.summarize_ms(steady_lat),
        "warmup_latency": common.summarize_ms(lat(warm)),
        "p50_ms_per_10s_window": _windows(steady, archived),
        "over_25ms": sum(1 for x in steady_lat if x > 0.025),
        "over_100ms": sum(1 for x in steady_lat if x > 0.1),
        "sink_writes_with_messages": len(sizes),
        "messages_per_write_p50_max": [common.quantile(sizes, 0.5), sizes[-1]] if sizes else [],
        "notifications_queued": m.notifications.labels("queued")._value.get(),
        "sweep_recovered_rows": m.sweep_recovered._value.get(),
    }


class Stages:
    """Diagnostics: wraps the service's edges (instance attributes only) to time each stage.

    notify: bridge commit -> NOTIFY callback in the archiver; queue: callback -> a worker starts
    the batch; then each call of the bridge query, the Synapse queries and the sink write.
    """

    def __init__(self) -> None:
        self.notified: dict[int, float] = {}
        self.started: dict[int, float] = {}
        self.calls: dict[str, list[float]] = {}

    @classmethod
    def attach(cls, svc: service.Service) -> Stages:
        stages = cls()
        try:
            stages._wrap(svc)
        except AttributeError as exc:  # the service's internals moved: skip the diagnostics
            print(f"(stage timing unavailable: {exc})", flush=True)
        return stages

    def _wrap(self, svc: service.Service) -> None:
        stages = self
        on_notify = svc.listener._on_notify

        def notify(conn: object, pid: int, channel: str, payload: str) -> None:
            now = time.time()
            with contextlib.suppress(Exception):
                for lo, hi in json.loads(payload)["ranges"]:
                    for rowid in range(lo, hi + 1):
                        stages.notified.setdefault(rowid, now)
            on_notify(conn, pid, channel, payload)

        svc.listener._on_notify = notify  # type: ignore[method-assign]
        process = svc.processor.process

        async def timed_process(rowids: list[int], *args: Any, **kwargs: Any) -> Any:
            now = time.time()
            for rowid in rowids:
                stages.started.setdefault(rowid, now)
            return await process(rowids, *args, **kwargs)

        svc.processor.process = timed_process  # type: ignore[method-assign]
        for name, obj, attr in (
            ("bridge_rows", svc.bridge, "rows"),
            ("synapse_events", svc.synapse, "events"),
            ("synapse_display_names", svc.synapse, "display_names"),
            ("sink_write", svc.sink, "write"),
        ):
            setattr(obj, attr, stages._timed(name, getattr(obj, attr)))

    def _timed(self, name: str, fn: Any) -> Any:
        samples = self.calls.setdefault(name, [])

        async def wrapper(*a: Any, **kw: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return await fn(*a, **kw)
            finally:
                samples.append(time.perf_counter() - t0)

        return wrapper

    def summary(self, sent: list[Sent], archived: Archived) -> dict[str, Any]:
        steady = [s for s in sent if not s.warmup]
        notify = [
            self.notified[s.rowid] - s.committed_at_s for s in steady if s.rowid in self.notified
        ]
        queue = [
            self.started[s.rowid] - self.notified[s.rowid]
            for s in steady
            if s.rowid in self.started and s.rowid in self.notified
        ]
        work = [
            archived.at[s.event_id] - self.started[s.rowid]
            for s in steady
            if s.rowid in self.started and s.event_id in archived.at
        ]
        return {
            "commit_to_notify": common.summarize_ms(notify),
            "notify_to_batch_start": common.summarize_ms(queue),
            "batch_start_to_archive_commit": common.summarize_ms(work),
            "calls": {k: common.summarize_ms(v) for k, v in self.calls.items()},
        }


def _windows(steady: list[Sent], archived: Archived) -> list[float]:
    """p50 per 10 s of sending, to see drift (does latency grow as the tables grow?)."""
    if not steady:
        return []
    t0 = steady[0].committed_at_s
    buckets: dict[int, list[float]] = {}
    for s in steady:
        if s.event_id in archived.at:
            buckets.setdefault(int((s.committed_at_s - t0) // 10), []).append(
                archived.at[s.event_id] - s.committed_at_s
            )
    return [round(common.median(v) * 1000, 2) for _, v in sorted(buckets.items())]


# -- main -----------------------------------------------------------------------------------------


def human(result: dict[str, Any]) -> str:
    a = result["archiver"]["latency"]
    lines = [
        f"latency bridge commit -> archive commit, {result['rate_per_s']:.0f} msg/s for "
        f"{result['duration_s']:.0f} s (+{result['warmup_s']:.0f} s warm-up), simulator "
        f"{'in-process' if result['sim_inproc'] else 'in a child process'}:",
        f"  archiver: n={a.get('n')} p50 {a.get('p50_ms')} ms, p90 {a.get('p90_ms')} ms, "
        f"p99 {a.get('p99_ms')} ms, max {a.get('max_ms')} ms "
        f"(archived {result['archiver']['archived']}/{result['archiver']['messages_sent']})",
    ]
    lines.append(f"    p50 per 10 s window: {result['archiver']['p50_ms_per_10s_window']} ms")
    st = result["archiver"]["stages"]
    for key in ("commit_to_notify", "notify_to_batch_start", "batch_start_to_archive_commit"):
        lines.append(f"    {key}: p50 {st[key].get('p50_ms')} ms, p99 {st[key].get('p99_ms')} ms")
    for key, v in st["calls"].items():
        lines.append(
            f"    call {key}: n={v.get('n')} p50 {v.get('p50_ms')} ms, p99 {v.get('p99_ms')} ms"
        )
    if "floor" in result:
        f = result["floor"]["latency"]
        lines.append(
            f"  floor (bare LISTEN): n={f.get('n')} p50 {f.get('p50_ms')} ms, p90 "
            f"{f.get('p90_ms')} ms, p99 {f.get('p99_ms')} ms, max {f.get('max_ms')} ms"
        )
    for t in result["targets"]:
        lines.append(f"  target {t['name']}: {t['value']} -> {t['verdict']}")
    return "\n".join(lines)


async def main(args: argparse.Namespace) -> None:
    info = common.machine_info()
    result: dict[str, Any] = {
        "benchmark": "latency",
        "machine": info,
        "quick": args.quick,
        "rate_per_s": args.rate,
        "duration_s": args.duration_s,
        "warmup_s": args.warmup_s,
        "sim_inproc": args.sim_inproc,
        "archiver_settings": "defaults (WORKERS=4, BATCH_SIZE=100, POLL_INTERVAL_MS=5000), uvloop",
    }
    async with common.databases() as dbs:
        if args.floor_s > 0:
            _, f_bridge = await dbs.bridge(trigger=True)
            _, f_synapse = await dbs.synapse()
            print(f"floor: bare LISTEN, {args.rate}/s for {args.floor_s} s ...", flush=True)
            result["floor"] = await measure_floor(args, f_bridge, f_synapse)
        for key, encrypted in (("archiver", False), ("archiver_e2ee", True)):
            if encrypted and not args.compare_e2ee:
                continue
            args.encrypted = encrypted
            urls = {
                "bridge": (await dbs.bridge(trigger=True))[1],
                "synapse": (await dbs.synapse())[1],
                "archive": (await dbs.archive())[1],
            }
            if encrypted:
                conn = await asyncpg.connect(urls["bridge"])
                await conn.execute(simulator.fixture_sql("crypto_store_v21.sql"))
                await conn.close()
            what = "encrypted portals" if encrypted else "clear portals"
            print(f"archiver, {what}: {args.rate}/s for {args.duration_s} s ...", flush=True)
            with tempfile.TemporaryDirectory(prefix="bench-media-") as media:
                result[key] = await measure_archiver(args, urls, Path(media))
    if args.compare_e2ee:
        clear, e2ee = result["archiver"]["latency"], result["archiver_e2ee"]["latency"]
        result["e2ee_p99_ratio"] = round(e2ee["p99_ms"] / clear["p99_ms"], 2)
        result["e2ee_p50_ratio"] = round(e2ee["p50_ms"] / clear["p50_ms"], 2)
        decrypted = result["archiver_e2ee"].get("archived")
        print(
            f"encrypted vs clear: p50 {e2ee['p50_ms']} vs {clear['p50_ms']} ms, p99 "
            f"{e2ee['p99_ms']} vs {clear['p99_ms']} ms = {result['e2ee_p99_ratio']}x "
            f"(goal <= 1.5x); archived {decrypted}",
            flush=True,
        )
    a = result["archiver"]["latency"]
    result["targets"] = [
        {
            "name": f"p50 <= {P50_TARGET_MS} ms",
            "value": f"{a.get('p50_ms')} ms",
            "verdict": "met" if a.get("p50_ms", 1e9) <= P50_TARGET_MS else "MISSED",
        },
        {
            "name": f"p99 <= {P99_TARGET_MS} ms",
            "value": f"{a.get('p99_ms')} ms",
            "verdict": "met" if a.get("p99_ms", 1e9) <= P99_TARGET_MS else "MISSED",
        },
    ]
    common.emit("latency", result, human(result))


def _run(coro: Any) -> None:
    try:
        import uvloop

        uvloop.run(coro)
    except ImportError:  # pragma: no cover
        asyncio.run(coro)


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short smoke run")
    parser.add_argument("--rate", type=float, default=100.0, help="messages per second")
    parser.add_argument("--duration-s", type=float, default=60.0)
    parser.add_argument("--warmup-s", type=float, default=5.0)
    parser.add_argument("--floor-s", type=float, default=30.0, help="0 skips the floor")
    parser.add_argument(
        "--sim-inproc", action="store_true", help="run the simulator in the archiver's event loop"
    )
    parser.add_argument(
        "--compare-e2ee", action="store_true", help="then the same traffic, encrypted portals"
    )
    parser.add_argument("--encrypted", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--traffic-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--bridge-url", help=argparse.SUPPRESS)
    parser.add_argument("--synapse-url", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.traffic_child:
        _run(traffic_child(args))
        return
    if args.quick:
        args.rate, args.duration_s, args.warmup_s, args.floor_s = 50.0, 5.0, 1.0, 3.0
    with contextlib.suppress(KeyboardInterrupt):
        _run(main(args))


if __name__ == "__main__":
    cli()
