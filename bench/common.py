"""Shared plumbing for the benchmarks: throwaway databases, machine facts, percentiles, output.

Every benchmark creates its databases with unique names on the local server (127.0.0.1 only)
and drops them on the way out, even on errors or Ctrl-C. The schemas come from the same files
the tests and operators use: ``listener/sim/fixtures/bridge_v29.sql`` + ``sql/triggers.sql``
(psql), ``listener/sim/fixtures/synapse_subset.sql`` and the archive migrations
(``listener.schema.migrate``).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import math
import os
import platform
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx

from listener.schema import migrate
from listener.sim import bridge as simulator

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
ADMIN_URL = os.environ.get("BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}


def check_local(url: str = ADMIN_URL) -> None:
    """Benchmarks send traffic to the local server only."""
    host = urlsplit(url).hostname
    if host not in LOCAL_HOSTS:
        raise SystemExit(f"refusing to benchmark against {host!r}: local PostgreSQL only")


def url_for(database: str) -> str:
    base, _, _ = ADMIN_URL.rpartition("/")
    return f"{base}/{database}"


def unique(prefix: str) -> str:
    return f"bench_{prefix}_{uuid.uuid4().hex[:8]}"


async def admin_execute(sql: str) -> None:
    conn = await asyncpg.connect(ADMIN_URL)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def psql_file(url: str, path: Path, *variables: str) -> None:
    """Run a shipped SQL file exactly as an operator would."""
    args = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url, "-f", str(path)]
    for variable in variables:
        args[1:1] = ["-v", variable]
    subprocess.run(args, check=True, capture_output=True, text=True)


def install_trigger(url: str) -> None:
    psql_file(url, REPO / "sql" / "triggers.sql")


def uninstall_trigger(url: str) -> None:
    psql_file(url, REPO / "sql" / "uninstall_triggers.sql")


class Databases:
    """Creates databases with unique names and drops every one of them on exit."""

    def __init__(self) -> None:
        self.names: list[str] = []

    async def create(self, prefix: str, *, template: str | None = None) -> tuple[str, str]:
        name = unique(prefix)
        self.names.append(name)
        clause = f' TEMPLATE "{template}"' if template else ""
        await admin_execute(f'CREATE DATABASE "{name}"{clause}')
        return name, url_for(name)

    async def bridge(self, *, trigger: bool = True) -> tuple[str, str]:
        name, url = await self.create("bridge")
        await _run_on(url, simulator.fixture_sql("bridge_v29.sql"))
        if trigger:
            install_trigger(url)
        return name, url

    async def synapse(self) -> tuple[str, str]:
        name, url = await self.create("synapse")
        await _run_on(url, simulator.fixture_sql("synapse_subset.sql"))
        return name, url

    async def archive(self) -> tuple[str, str]:
        name, url = await self.create("archive")
        conn = await asyncpg.connect(url)
        try:
            await migrate.migrate(conn)
        finally:
            await conn.close()
        return name, url

    async def drop(self, name: str) -> None:
        await admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if name in self.names:
            self.names.remove(name)

    async def drop_all(self) -> None:
        for name in reversed(list(self.names)):
            with contextlib.suppress(Exception):
                await self.drop(name)


@contextlib.asynccontextmanager
async def databases() -> AsyncIterator[Databases]:
    check_local()
    dbs = Databases()
    try:
        yield dbs
    finally:
        await dbs.drop_all()


async def _run_on(url: str, sql: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


# -- the archiver as a process ---------------------------------------------------------------


def free_port() -> int:
    """A free TCP port on this machine (for the archiver's METRICS_ADDR)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def start_archiver(
    env: dict[str, str], *, stderr: Any = asyncio.subprocess.DEVNULL
) -> asyncio.subprocess.Process:
    """``python -m listener run`` from the repository with ``env`` (its settings)."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "listener",
        "run",
        env=env,
        cwd=REPO,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=stderr,
    )


async def wait_ready(addr: str, *, timeout_s: float = 30.0) -> None:
    """Until the archiver serving ``/readyz`` on ``addr`` (host:port) answers 200."""
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient(timeout=1.0) as client:
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(f"http://{addr}/readyz")).status_code == 200:
                    return
            await asyncio.sleep(0.05)
    raise RuntimeError(f"the archiver on {addr} did not become ready in {timeout_s} s")


# -- machine facts -----------------------------------------------------------------------------


def code_fingerprint() -> dict[str, str]:
    """Which code was measured: git HEAD of the source tree plus a hash of what actually ran
    (listener/ and sql/ here, which is a frozen copy under bench.snapshot)."""
    import hashlib

    digest = hashlib.sha256()
    for path in sorted(
        [
            *(REPO / "listener").rglob("*.py"),
            *(REPO / "listener").rglob("*.sql"),
            *(REPO / "sql").rglob("*.sql"),
        ]
    ):
        digest.update(str(path.relative_to(REPO)).encode())
        digest.update(path.read_bytes())
    source = Path(os.environ.get("BENCH_SOURCE_TREE", REPO))
    head = subprocess.run(
        ["git", "-C", str(source), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "-C", str(source), "status", "--porcelain", "--", "listener", "sql"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    return {
        "git_head": head or "?",
        "tree": "HEAD + uncommitted changes" if dirty else "HEAD",
        "listener_sql_sha256": digest.hexdigest()[:16],
        "ran_from": str(REPO),
    }


def machine_info() -> dict[str, Any]:
    """What the docs ask for next to every number: cores, memory, versions, date, PG settings."""
    free = subprocess.run(["free", "-h"], capture_output=True, text=True).stdout.strip()
    pg = (
        subprocess.run(
            [
                "psql",
                "-X",
                "-At",
                "-d",
                ADMIN_URL,
                "-c",
                "SELECT version(); SELECT name || '=' || setting FROM pg_settings WHERE name IN "
                "('fsync','synchronous_commit','wal_sync_method','shared_buffers','autovacuum',"
                "'commit_delay') ORDER BY name",
            ],
            capture_output=True,
            text=True,
        )
        .stdout.strip()
        .splitlines()
    )
    load = os.getloadavg()
    return {
        "date_utc": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S"),
        "nproc": os.cpu_count(),
        "free_h": free,
        "postgresql": pg[0] if pg else "?",
        "pg_settings": pg[1:],
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg_at_start": [round(x, 2) for x in load],
        "argv": " ".join(sys.argv),
        "code": code_fingerprint(),
    }


# -- statistics --------------------------------------------------------------------------------


def quantile(sorted_values: Sequence[float], q: float) -> float:
    """Linear-interpolated quantile of already sorted values (q in [0, 1])."""
    if not sorted_values:
        return math.nan
    pos = (len(sorted_values) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    if lo == hi:
        return float(sorted_values[lo])
    return float(sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo))


def summarize_ms(values_s: Iterable[float]) -> dict[str, float]:
    """p50/p90/p99/max/mean (milliseconds) of values given in seconds."""
    ordered = sorted(v * 1000.0 for v in values_s)
    if not ordered:
        return {"n": 0}
    return {
        "n": len(ordered),
        "min_ms": round(ordered[0], 3),
        "p50_ms": round(quantile(ordered, 0.50), 3),
        "p90_ms": round(quantile(ordered, 0.90), 3),
        "p99_ms": round(quantile(ordered, 0.99), 3),
        "max_ms": round(ordered[-1], 3),
        "mean_ms": round(sum(ordered) / len(ordered), 3),
    }


def median(values: Sequence[float]) -> float:
    return quantile(sorted(values), 0.5)


# -- output ------------------------------------------------------------------------------------


def emit(name: str, summary: dict[str, Any], human: str) -> Path:
    """Print the JSON summary and the human summary; keep the JSON under bench/results/."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = RESULTS / f"{name}-{stamp}.json"
    path.write_text(json.dumps(summary, indent=2, default=str) + "\n")
    print("=== JSON summary ===")
    print(json.dumps(summary, indent=2, default=str))
    print("=== summary ===")
    print(human)
    print(f"(JSON kept in {path.relative_to(REPO)})")
    return path


def require(tool: str) -> str:
    found = shutil.which(tool)
    if not found:
        raise SystemExit(f"{tool} is needed on PATH for this benchmark")
    return found
