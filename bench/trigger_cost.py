"""The NOTIFY trigger's cost to the bridge: INSERT throughput and latency with and without it.

The bridge (mautrix-whatsapp, Go/pgx) inserts each message row in its own autocommit statement
(``INSERT ... RETURNING rowid``). We drive the same statement with ``pgbench`` (a C client, so the
client is not the bottleneck the way a Python loop would be) against a bridge-schema database,
and alternate runs with the trigger installed (``sql/triggers.sql`` via psql) and removed
(``sql/uninstall_triggers.sql``) in one session, ABBA order, a CHECKPOINT before every run. A
LISTEN connection (a child process that parses every payload, like the archiver's callback) stays
connected throughout, as in production.

Scenarios:
  single   one writer, as fast as it goes (target: <= 10 % fewer inserts/s with the trigger)
  four     four concurrent writers (reported: NOTIFY serialises notifying commits)
  paced    one writer paced at 400 inserts/s; per-insert execution latency from pgbench's
           per-transaction log (schedule lag removed) (target: < 0.3 ms added on average)
  bulk     one 1,000-row single-statement INSERT per transaction

    .venv/bin/python -m bench.trigger_cost            # full: 5 rounds x 2 s (paced 5 s)
    .venv/bin/python -m bench.trigger_cost --quick    # smoke: 2 rounds x 1 s
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg

from bench import common
from listener.sim import bridge as simulator

CHANNEL = "archiver_db"
PORTAL_ID = "120363000000000001@g.us"
GHOST_ID = "4915100000002"
# pgbench takes ":name" as a variable even inside a string literal: spell that colon E'\\x3a'.
SENDER_MXID = f"@whatsapp_{GHOST_ID}\\x3aexample.org"

# One message row, as bridgev2's message insert writes it (autocommit, RETURNING rowid).
SINGLE_SQL = f"""INSERT INTO message (bridge_id, id, part_id, mxid, room_id, room_receiver, \
sender_id, sender_mxid, timestamp, edit_count, double_puppeted, thread_root_id, reply_to_id, \
reply_to_part_id, send_txn_id, metadata) VALUES ('', '{PORTAL_ID}:{GHOST_ID}@s.whatsapp.net:' \
|| gen_random_uuid(), '', '$' || gen_random_uuid(), '{PORTAL_ID}', '', '{GHOST_ID}', \
E'{SENDER_MXID}', (extract(epoch FROM now()) * 1000000000)::bigint, 0, false, NULL, NULL, NULL, \
NULL, '{{"sender_device_id":0}}') RETURNING rowid;
"""

BULK_SQL = f"""INSERT INTO message (bridge_id, id, part_id, mxid, room_id, room_receiver, \
sender_id, sender_mxid, timestamp, edit_count, double_puppeted, metadata) \
SELECT '', '{PORTAL_ID}:{GHOST_ID}@s.whatsapp.net:' || u, '', '$' || u, '{PORTAL_ID}', '', \
'{GHOST_ID}', E'{SENDER_MXID}', ts, 0, false, '{{"sender_device_id":0}}' \
FROM (SELECT gen_random_uuid()::text AS u, (extract(epoch FROM now()) * 1000000000)::bigint AS ts \
FROM generate_series(1, 1000)) AS s RETURNING rowid;
"""


# A bench-only experiment, never installed anywhere but this benchmark's throwaway database:
# the shipped function with a fast path for the common case (the statement's rowids are one
# consecutive run: every single-row INSERT, and multi-row INSERTs that did not interleave),
# which skips the window-function island query. Same payload, same safety net.
FAST_FUNCTION = """
CREATE OR REPLACE FUNCTION archiver_db.bench_notify_rowids_fast()
    RETURNS trigger LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $function$
DECLARE
    channel text := coalesce(TG_ARGV[0], 'archiver_db');
    n bigint; lo bigint; hi bigint;
BEGIN
    SELECT count(*), min(rowid), max(rowid) INTO n, lo, hi FROM new_rows;
    IF n = 0 THEN
        RETURN NULL;
    END IF;
    IF hi - lo + 1 <> n THEN
        RETURN NULL;  -- (the experiment only measures the fast path; the real one would fall
                      -- back to the island query here)
    END IF;
    IF pg_notification_queue_usage() > 0.5 THEN
        RETURN NULL;
    END IF;
    PERFORM pg_notify(channel, '{"v":1,"table":"message","op":"INSERT","ranges":[['
                               || lo || ',' || hi || ']]}');
    RETURN NULL;
EXCEPTION WHEN OTHERS THEN
    RAISE WARNING 'archiver_db: could not notify: % (SQLSTATE %)', SQLERRM, SQLSTATE;
    RETURN NULL;
END
$function$;
DROP TRIGGER IF EXISTS archiver_db_message_insert ON public.message;
CREATE TRIGGER archiver_db_message_insert
    AFTER INSERT ON public.message REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION archiver_db.bench_notify_rowids_fast('archiver_db');
"""


@dataclass
class Scenario:
    name: str
    script: str
    clients: int
    seconds: float
    rate: float | None = None
    log: bool = False
    rows_per_txn: int = 1
    modes: tuple[str, ...] = ("trigger", "none")


@dataclass
class Run:
    scenario: str
    mode: str  # "trigger", "none", "fast" (bench-only function), "unlistened" (no LISTENer)
    round: int
    tps: float
    txns: int
    latency_avg_ms: float
    lag_avg_ms: float | None = None
    exec_ms: dict[str, float] = field(default_factory=dict)


# -- the LISTEN child --------------------------------------------------------------------------


async def listen_child(url: str) -> None:
    """Stay LISTENing and parse every payload (like the archiver's callback) until SIGTERM."""
    conn = await asyncpg.connect(url, server_settings={"application_name": "bench-listener"})
    counts = {"notifications": 0, "rows": 0}

    def on_notify(_c: object, _pid: int, _channel: str, payload: str) -> None:
        note = json.loads(payload)
        counts["notifications"] += 1
        counts["rows"] += sum(hi - lo + 1 for lo, hi in note["ranges"])

    await conn.add_listener(CHANNEL, on_notify)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print("READY", flush=True)
    await stop.wait()
    await conn.close()
    print(json.dumps(counts), flush=True)


class ListenerProcess:
    def __init__(self, url: str) -> None:
        self._url = url
        self.totals: dict[str, int] = {"notifications": 0, "rows": 0}
        self._start()

    def pause(self) -> None:
        for key, value in self.stop().items():
            self.totals[key] += value

    def resume(self) -> None:
        self._start()

    def _start(self) -> None:
        url = self._url
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "bench.trigger_cost", "--listen-child", url],
            stdout=subprocess.PIPE,
            text=True,
            cwd=common.REPO,
        )
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline().strip()
        if line != "READY":
            raise RuntimeError(f"listener child did not start: {line!r}")

    def stop(self) -> dict[str, int]:
        self._proc.send_signal(signal.SIGTERM)
        out, _ = self._proc.communicate(timeout=30)
        lines = [x for x in out.splitlines() if x.startswith("{")]
        return json.loads(lines[-1]) if lines else {}


# -- pgbench -----------------------------------------------------------------------------------


def pgbench(url: str, scenario: Scenario, script: Path, logdir: Path | None) -> dict[str, Any]:
    parts = urlsplit(url)
    args = [
        "pgbench",
        "-n",
        "-M",
        "prepared",
        "-h",
        parts.hostname or "127.0.0.1",
        "-p",
        str(parts.port or 5432),
        "-U",
        parts.username or "postgres",
        "-c",
        str(scenario.clients),
        "-j",
        str(min(scenario.clients, 2)),
        "-T",
        str(int(scenario.seconds)),
        "-f",
        str(script),
    ]
    if scenario.rate:
        args += ["-R", str(scenario.rate)]
    if logdir is not None:
        args += ["-l", f"--log-prefix={logdir}/txn"]
    args.append(parts.path.lstrip("/"))
    proc = subprocess.run(args, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"pgbench failed ({proc.returncode}): {proc.stderr[-2000:]}")
    out = proc.stdout
    result: dict[str, Any] = {
        "tps": float(_grab(r"tps = ([\d.]+) \(without initial", out)),
        "txns": int(_grab(r"number of transactions actually processed: (\d+)", out)),
        "latency_avg_ms": float(_grab(r"latency average = ([\d.]+) ms", out)),
    }
    if scenario.rate:
        result["lag_avg_ms"] = float(_grab(r"schedule lag: avg ([\d.]+)", out))
    if logdir is not None:
        result["exec_s"] = _exec_times(logdir)
    return result


def _grab(pattern: str, text: str) -> str:
    match = re.search(pattern, text)
    if not match:
        raise RuntimeError(f"pgbench output lacks {pattern!r}:\n{text}")
    return match.group(1)


def _exec_times(logdir: Path) -> list[float]:
    """Per-transaction execution time (latency minus schedule lag), seconds."""
    times: list[float] = []
    for path in logdir.glob("txn*"):
        for line in path.read_text().splitlines():
            cols = line.split()
            # client_id txn_no time script_no time_epoch time_us [schedule_lag]
            latency_us = int(cols[2])
            lag_us = int(cols[6]) if len(cols) > 6 else 0
            times.append((latency_us - lag_us) / 1e6)
        path.unlink()
    return times


# -- the bridge database -----------------------------------------------------------------------


async def prepare_bridge(url: str) -> None:
    """One group portal and one ghost, so message rows satisfy the bridge's foreign keys."""
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(simulator.INSERT_GHOST, "", GHOST_ID, "Bench Ghost", True, "[]", "{}")
        await conn.execute(
            simulator.INSERT_PORTAL, "", PORTAL_ID, "", "!bench:example.org", None, "Bench", ""
        )
    finally:
        await conn.close()


async def trigger_installed(url: str) -> bool:
    conn = await asyncpg.connect(url)
    try:
        return bool(
            await conn.fetchval(
                "SELECT count(*) FROM pg_trigger WHERE tgname = 'archiver_db_message_insert'"
            )
        )
    finally:
        await conn.close()


async def set_mode(url: str, mode: str) -> None:
    if mode in ("trigger", "fast"):
        common.install_trigger(url)
    else:
        common.uninstall_trigger(url)
    if mode == "fast":
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(FAST_FUNCTION)
        finally:
            await conn.close()
    if await trigger_installed(url) != (mode != "none"):
        raise RuntimeError(f"trigger state is not {mode}")
    await common.admin_execute("CHECKPOINT")


async def explain_trigger_ms(url: str, modes: tuple[str, ...], samples: int) -> dict[str, Any]:
    """Server-side time of the trigger function per single-row INSERT (EXPLAIN ANALYZE's
    per-trigger timing), median over ``samples`` statements, for each mode."""
    sql = SINGLE_SQL.replace("\\x3a", ":").replace("E'@", "'@").rstrip().rstrip(";")
    out: dict[str, Any] = {}
    for mode in modes:
        await set_mode(url, mode)
        conn = await asyncpg.connect(url)
        trig, total = [], []
        try:
            for _ in range(samples):
                plan = json.loads(await conn.fetchval("EXPLAIN (ANALYZE, FORMAT JSON) " + sql))[0]
                total.append(plan["Execution Time"])
                # Only ours: the foreign-key checks are triggers too (RI_ConstraintTrigger_*).
                trig.append(
                    sum(
                        t["Time"]
                        for t in plan.get("Triggers", [])
                        if t["Trigger Name"].startswith("archiver_db")
                    )
                )
        finally:
            await conn.close()
        out[mode] = {
            "statement_ms_median": round(common.median(total), 4),
            "trigger_ms_median": round(common.median(trig), 4),
        }
    return out


async def run_scenarios(
    url: str, scenarios: list[Scenario], rounds: int, tmp: Path, listener: ListenerProcess
) -> list[Run]:
    runs: list[Run] = []
    for scenario in scenarios:
        script = tmp / f"{scenario.name}.sql"
        script.write_text(scenario.script)
        for rnd in range(rounds):
            shift = rnd % len(scenario.modes)
            order = scenario.modes[shift:] + scenario.modes[:shift]
            if rnd % 2:
                order = order[::-1]
            for mode in order:
                await set_mode(url, "trigger" if mode == "unlistened" else mode)
                if mode == "unlistened":
                    listener.pause()
                logdir = None
                if scenario.log:
                    logdir = tmp / f"log-{scenario.name}-{mode}-{rnd}"
                    logdir.mkdir()
                try:
                    res = pgbench(url, scenario, script, logdir)
                finally:
                    if mode == "unlistened":
                        listener.resume()
                run = Run(
                    scenario.name,
                    mode,
                    rnd,
                    res["tps"],
                    res["txns"],
                    res["latency_avg_ms"],
                    res.get("lag_avg_ms"),
                    common.summarize_ms(res["exec_s"]) if "exec_s" in res else {},
                )
                runs.append(run)
                print(
                    f"  {scenario.name:6} round {rnd} {mode:7} tps={run.tps:9.1f} "
                    f"lat={run.latency_avg_ms:.3f} ms"
                    + (f" exec_mean={run.exec_ms['mean_ms']:.3f} ms" if run.exec_ms else ""),
                    flush=True,
                )
    return runs


# -- analysis ----------------------------------------------------------------------------------


def analyse(runs: list[Run], scenarios: list[Scenario]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for scenario in scenarios:
        mine = [r for r in runs if r.scenario == scenario.name]
        trig = [r for r in mine if r.mode == "trigger"]
        none = [r for r in mine if r.mode == "none"]
        fast = [r for r in mine if r.mode == "fast"]
        med_t = common.median([r.tps for r in trig])
        med_n = common.median([r.tps for r in none])
        paired = [t.tps / n.tps for t in trig for n in none if t.round == n.round]
        entry: dict[str, Any] = {
            "clients": scenario.clients,
            "seconds_per_run": scenario.seconds,
            "rows_per_txn": scenario.rows_per_txn,
            "tps_trigger": [round(r.tps, 1) for r in trig],
            "tps_none": [round(r.tps, 1) for r in none],
            "median_tps_trigger": round(med_t, 1),
            "median_tps_none": round(med_n, 1),
            "ratio_of_medians": round(med_t / med_n, 4),
            "median_paired_ratio": round(common.median(paired), 4),
            "slowdown_pct": round((1 - common.median(paired)) * 100, 2),
            "median_latency_ms_trigger": round(common.median([r.latency_avg_ms for r in trig]), 4),
            "median_latency_ms_none": round(common.median([r.latency_avg_ms for r in none]), 4),
        }
        for label, extra in (
            ("fast_path_experiment", fast),
            ("no_listener", [r for r in mine if r.mode == "unlistened"]),
        ):
            if extra:
                xpaired = [x.tps / n.tps for x in extra for n in none if x.round == n.round]
                entry |= {
                    f"tps_{label}": [round(r.tps, 1) for r in extra],
                    f"median_tps_{label}": round(common.median([r.tps for r in extra]), 1),
                    f"{label}_slowdown_pct": round((1 - common.median(xpaired)) * 100, 2),
                }
        if scenario.rate:
            mt = [r.exec_ms["mean_ms"] for r in trig]
            mn = [r.exec_ms["mean_ms"] for r in none]
            pairs = [
                t.exec_ms["mean_ms"] - n.exec_ms["mean_ms"]
                for t in trig
                for n in none
                if t.round == n.round
            ]
            entry |= {
                "rate_per_s": scenario.rate,
                "exec_mean_ms_trigger": [round(x, 4) for x in mt],
                "exec_mean_ms_none": [round(x, 4) for x in mn],
                "exec_p50_ms_trigger": round(common.median([r.exec_ms["p50_ms"] for r in trig]), 4),
                "exec_p50_ms_none": round(common.median([r.exec_ms["p50_ms"] for r in none]), 4),
                "exec_p99_ms_trigger": round(common.median([r.exec_ms["p99_ms"] for r in trig]), 4),
                "exec_p99_ms_none": round(common.median([r.exec_ms["p99_ms"] for r in none]), 4),
                "added_mean_ms_median_of_pairs": round(common.median(pairs), 4),
                "added_mean_ms_per_round": [round(x, 4) for x in pairs],
            }
        out[scenario.name] = entry
    return out


def human(result: dict[str, Any], listener: dict[str, int], quick: bool) -> str:
    s = result["scenarios"]
    lines = [f"trigger cost ({'quick' if quick else 'full'}), medians of alternating runs:"]
    for name, e in s.items():
        lines.append(
            f"  {name:6} c={e['clients']} trigger {e['median_tps_trigger']:9.1f} tps vs none "
            f"{e['median_tps_none']:9.1f} tps  -> {e['slowdown_pct']:+.1f}% slower "
            f"(paired ratio {e['median_paired_ratio']:.3f})"
        )
    if "paced" in s:
        p = s["paced"]
        lines.append(
            f"  paced @{p['rate_per_s']:.0f}/s: mean exec latency added "
            f"{p['added_mean_ms_median_of_pairs']:.3f} ms (p50 {p['exec_p50_ms_none']:.3f} -> "
            f"{p['exec_p50_ms_trigger']:.3f} ms, p99 {p['exec_p99_ms_none']:.3f} -> "
            f"{p['exec_p99_ms_trigger']:.3f} ms)"
        )
    for label, text in (
        ("fast_path_experiment", "the bench-only fast-path function"),
        ("no_listener", "the trigger but no LISTENer connected"),
    ):
        if f"{label}_slowdown_pct" in s.get("single", {}):
            lines.append(
                f"  single with {text}: {s['single'][f'median_tps_{label}']} tps -> "
                f"{s['single'][f'{label}_slowdown_pct']:+.1f}% vs none"
            )
    for mode, e in result["explain_single_insert"].items():
        lines.append(
            f"  EXPLAIN ANALYZE single INSERT, {mode:7}: statement {e['statement_ms_median']} ms,"
            f" of which trigger {e['trigger_ms_median']} ms (median)"
        )
    for target in result["targets"]:
        lines.append(f"  target {target['name']}: {target['value']} -> {target['verdict']}")
    lines.append(f"  listener received {listener}")
    return "\n".join(lines)


async def main(args: argparse.Namespace) -> None:
    common.require("pgbench")
    info = common.machine_info()
    seconds = 1.0 if args.quick else args.seconds
    rounds = 2 if args.quick else args.rounds
    scenarios = [
        Scenario("single", SINGLE_SQL, 1, seconds, modes=("trigger", "none", "fast", "unlistened")),
        Scenario("four", SINGLE_SQL, 4, seconds),
        Scenario(
            "paced",
            SINGLE_SQL,
            1,
            2.0 if args.quick else args.paced_seconds,
            rate=args.rate,
            log=True,
        ),
        Scenario("bulk", BULK_SQL, 1, seconds, rows_per_txn=1000),
    ]
    if args.only:
        scenarios = [s for s in scenarios if s.name in args.only.split(",")]
    async with common.databases() as dbs:
        _, url = await dbs.bridge(trigger=True)
        await prepare_bridge(url)
        listener = ListenerProcess(url)
        try:
            with tempfile.TemporaryDirectory(prefix="bench-trigger-") as tmp:
                runs = await run_scenarios(url, scenarios, rounds, Path(tmp), listener)
                explain = await explain_trigger_ms(
                    url, ("trigger", "fast", "none"), 50 if args.quick else 500
                )
        finally:
            listener.pause()
            received = listener.totals
        conn = await asyncpg.connect(url)
        rows = int(await conn.fetchval("SELECT count(*) FROM message"))
        await conn.close()
    result: dict[str, Any] = {
        "benchmark": "trigger_cost",
        "machine": info,
        "quick": args.quick,
        "rounds": rounds,
        "client": "pgbench -M prepared (autocommit single statements)",
        "scenarios": analyse(runs, scenarios),
        "listener_received": received,
        "explain_single_insert": explain,
        "trigger_txns": sum(r.txns for r in runs if r.mode == "trigger"),
        "rows_inserted_total": rows,
        "runs": [r.__dict__ for r in runs],
    }
    targets = []
    sc = result["scenarios"]
    if "single" in sc:
        v = sc["single"]["slowdown_pct"]
        targets.append(
            {
                "name": "single writer <= 10% slower",
                "value": f"{v:.1f}%",
                "verdict": "met" if v <= 10 else "MISSED",
            }
        )
    if "paced" in sc:
        v = sc["paced"]["added_mean_ms_median_of_pairs"]
        targets.append(
            {
                "name": "paced 400/s added mean latency < 0.3 ms",
                "value": f"{v:.3f} ms",
                "verdict": "met" if v < 0.3 else "MISSED",
            }
        )
    result["targets"] = targets
    common.emit("trigger_cost", result, human(result, received, args.quick))


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short smoke run")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=2.0, help="seconds per run")
    parser.add_argument("--paced-seconds", type=float, default=5.0)
    parser.add_argument("--rate", type=float, default=400.0, help="paced inserts/s")
    parser.add_argument("--only", help="comma-separated scenarios: single,four,paced,bulk")
    parser.add_argument("--listen-child", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.listen_child:
        asyncio.run(listen_child(args.listen_child))
        return
    asyncio.run(main(args))


if __name__ == "__main__":
    cli()
