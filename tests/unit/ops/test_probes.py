"""Readiness, liveness and watchdog decisions (pure)."""

from __future__ import annotations

import pytest

from listener.core import errors
from listener.ops import probes

ALL_UP = dict.fromkeys(probes.DEPENDENCIES, True)


@pytest.mark.parametrize(
    ("down", "ready"),
    [(None, True), ("listener", False), ("synapse", False), ("archive", False), ("trigger", False)],
)
def test_readiness__needs_every_dependency_and_the_trigger(down: str | None, ready: bool) -> None:
    checks = ALL_UP | ({down: False} if down else {})
    report = probes.readiness(checks)
    assert report.ok is ready
    assert report.as_json()["failing"] == ([down] if down else [])


def test_readiness__an_unprobed_dependency_is_not_ready() -> None:
    report = probes.readiness({"listener": True, "trigger": True})
    assert not report.ok
    assert report.as_json()["failing"] == ["archive", "bridge", "synapse"]


@pytest.mark.parametrize(
    ("stopping", "crashed", "workers", "ok"),
    [
        (False, False, True, True),
        (True, False, True, False),
        (False, True, True, False),
        (False, False, False, False),
    ],
)
def test_liveness(stopping: bool, crashed: bool, workers: bool, ok: bool) -> None:
    report = probes.liveness(stopping=stopping, crashed=crashed, workers_alive=workers, uptime_s=3)
    assert report.ok is ok
    assert report.as_json()["uptime_s"] == 3


@pytest.mark.parametrize(
    ("listening", "workers", "since_progress_s", "interval_s", "alive"),
    [
        (True, True, 10_000.0, 5.0, True),  # listening: alive however quiet
        (True, False, 0.0, 5.0, False),  # a dead worker: never alive
        (False, True, 10.0, 5.0, True),  # sweeping recently
        (False, True, 29.0, 1.0, True),  # within the floor
        (False, True, 31.0, 1.0, False),  # past the floor
        (False, True, 140.0, 60.0, True),  # three long sweep periods
        (False, True, 200.0, 60.0, False),
    ],
)
def test_pipeline_alive__listening_or_sweeping_with_workers(
    listening: bool, workers: bool, since_progress_s: float, interval_s: float, alive: bool
) -> None:
    assert (
        probes.pipeline_alive(
            listener_connected=listening,
            workers_alive=workers,
            since_progress_s=since_progress_s,
            sweep_interval_s=interval_s,
        )
        is alive
    )


def test_transitions__report_changes_and_a_first_sight_down() -> None:
    assert probes.transitions({}, {"bridge": True, "synapse": False}) == [("synapse", False)]
    assert probes.transitions({"bridge": True}, {"bridge": False}) == [("bridge", False)]
    assert probes.transitions({"bridge": False}, {"bridge": True}) == [("bridge", True)]
    assert probes.transitions({"bridge": True}, {"bridge": True}) == []


async def test_ping__answers_none_or_a_reason() -> None:
    async def fine() -> None:
        return None

    async def broken() -> None:
        raise errors.SourceError("bridge query failed: ConnectionRefusedError")

    async def hangs() -> None:
        import asyncio

        await asyncio.sleep(10)

    assert await probes.ping(fine, timeout_s=1) is None
    assert await probes.ping(broken, timeout_s=1) == "bridge query failed: ConnectionRefusedError"
    assert await probes.ping(hangs, timeout_s=0.01) == "no answer within 0.01 s"


def test_heartbeat_and_status_line() -> None:
    report = probes.readiness(ALL_UP | {"synapse": False})
    beat = probes.heartbeat(
        now_s=100.0,
        started_at_s=40.0,
        pid=7,
        host="h",
        version="0.1.0",
        cursor=12,
        rowid_lag=3,
        queue_depth=1,
        queue_capacity=10,
        failures_pending=2,
        last_archived_s=None,
        ready=report,
    )
    assert beat["ready"] is False
    assert beat["last_archived_at"] is None
    assert probes.status_line(beat) == (
        "degraded (synapse down); cursor 12, lag 3 rows, queue 1/10, 2 failures pending"
    )
