"""Liveness, readiness, watchdog health and the heartbeat: pure decisions over observed facts.

The service observes (pings each database, looks at its tasks) and these functions decide. They
take every fact, and the clock, as arguments.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from listener.core import errors

HEARTBEAT_KEY = "heartbeat"
# Without the listener, the pipeline counts as alive while a sweep or a batch completed this
# recently: a few sweep periods, and never less than this floor (a slow catch-up is not a hang).
STALL_SWEEP_PERIODS = 3
STALL_FLOOR_S = 30.0
DEPENDENCIES = ("listener", "bridge", "synapse", "archive", "trigger")


@dataclass(frozen=True, slots=True)
class Report:
    """What ``/healthz`` and ``/readyz`` answer: a verdict and the facts behind it."""

    ok: bool
    checks: dict[str, bool] = field(default_factory=dict)
    detail: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        failing = sorted(name for name, ok in self.checks.items() if not ok)
        return {"ok": self.ok, "checks": self.checks, "failing": failing, **self.detail}


def readiness(checks: Mapping[str, bool], *, detail: Mapping[str, Any] | None = None) -> Report:
    """Ready when connected to every source and the sink, and the trigger is present."""
    values = {name: bool(checks.get(name, False)) for name in DEPENDENCIES}
    return Report(ok=all(values.values()), checks=values, detail=dict(detail or {}))


def liveness(*, stopping: bool, crashed: bool, workers_alive: bool, uptime_s: float) -> Report:
    checks = {"running": not stopping, "no_crash": not crashed, "workers": workers_alive}
    return Report(ok=all(checks.values()), checks=checks, detail={"uptime_s": round(uptime_s, 1)})


def pipeline_alive(
    *,
    listener_connected: bool,
    workers_alive: bool,
    since_progress_s: float,
    sweep_interval_s: float,
) -> bool:
    """Whether systemd's watchdog should be fed: workers up, and listening or sweeping."""
    if not workers_alive:
        return False
    if listener_connected:
        return True
    return since_progress_s <= max(STALL_SWEEP_PERIODS * sweep_interval_s, STALL_FLOOR_S)


def transitions(before: Mapping[str, bool], after: Mapping[str, bool]) -> list[tuple[str, bool]]:
    """The dependencies whose state changed, with their new state (unknown counts as up)."""
    return [(name, ok) for name, ok in after.items() if before.get(name, True) != ok]


async def ping(action: Callable[[], Awaitable[object]], *, timeout_s: float) -> str | None:
    """Run a health query; None when it answered in time, else a short reason."""
    try:
        await asyncio.wait_for(action(), timeout_s)
    except TimeoutError:
        return f"no answer within {timeout_s:g} s"
    except errors.ArchiverError as exc:
        return str(exc)
    return None


async def first_set(*events: asyncio.Event, timeout_s: float | None = None) -> None:
    """Wait until any of ``events`` is set, or ``timeout_s`` has passed (None: no limit)."""
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


def heartbeat(
    *,
    now_s: float,
    started_at_s: float,
    pid: int,
    host: str,
    version: str,
    cursor: int,
    rowid_lag: int,
    queue_depth: int,
    queue_capacity: int,
    failures_pending: int,
    last_archived_s: float | None,
    ready: Report,
) -> dict[str, Any]:
    """The small JSON the service saves in ``archiver_state`` for ``archiver-db status``."""
    return {
        "at": round(now_s, 3),
        "started_at": round(started_at_s, 3),
        "pid": pid,
        "host": host,
        "version": version,
        "cursor": cursor,
        "rowid_lag": rowid_lag,
        "queue_depth": queue_depth,
        "queue_capacity": queue_capacity,
        "failures_pending": failures_pending,
        "last_archived_at": round(last_archived_s, 3) if last_archived_s else None,
        "ready": ready.ok,
        "checks": ready.checks,
    }


def status_line(beat: Mapping[str, Any]) -> str:
    """A one-line summary for ``systemctl status`` (sd_notify STATUS=)."""
    state = "archiving" if beat.get("ready") else "degraded"
    failing = [name for name, ok in (beat.get("checks") or {}).items() if not ok]
    down = f" ({', '.join(failing)} down)" if failing else ""
    return (
        f"{state}{down}; cursor {beat.get('cursor')}, lag {beat.get('rowid_lag')} rows, "
        f"queue {beat.get('queue_depth')}/{beat.get('queue_capacity')}, "
        f"{beat.get('failures_pending')} failures pending"
    )
