"""`status` rendering and `verify` tallies (pure)."""

from __future__ import annotations

from listener.core import models, roomfilter
from listener.ops import status, verify

EVERY_ROOM = roomfilter.RoomFilter.build(configured=(), rows=(), auto_register=False)


def snap(**changes: object) -> status.Snapshot:
    beat = {
        "at": 1000.0,
        "started_at": 400.0,
        "pid": 42,
        "host": "arch1",
        "version": "0.1.0",
        "cursor": 77,
        "rowid_lag": 3,
        "queue_depth": 2,
        "queue_capacity": 10_000,
        "failures_pending": 1,
        "ready": True,
        "checks": {"listener": True, "bridge": True},
    }
    value = status.Snapshot(cursor=77, heartbeat=beat, heartbeat_age_s=2.0)
    for name, item in changes.items():
        setattr(value, name, item)
    return value


def test_status__service_state_from_the_heartbeat_age() -> None:
    assert snap().service_state(heartbeat_interval_s=5) == "running"
    assert (
        snap(heartbeat_age_s=60.0).service_state(heartbeat_interval_s=5).startswith("not running")
    )
    assert (
        snap(heartbeat=None, heartbeat_age_s=None)
        .service_state(heartbeat_interval_s=5)
        .startswith("never ran")
    )


def test_status__render_shows_cursor_lag_queue_failures_rooms() -> None:
    value = snap(
        failures={"missing_event": 2, "malformed_event": 1},
        rooms=[
            {
                "room_id": "!a:example.org",
                "room_name": "Family",
                "last_message_at": "2025-01-02 03:04:05",
                "archived_at": "2025-01-02 03:04:06",
                "event_id": "$e",
                "message_type": "m.text",
            }
        ],
    )
    text = status.render(value, heartbeat_interval_s=5, now_s=1000.0)
    lines = text.splitlines()
    assert lines[0] == (
        "service   running; heartbeat 2 s ago from pid 42 on arch1 (v0.1.0, up 10 min)"
    )
    assert "cursor    rowid 77" in lines
    assert "lag       3 rows" in lines
    assert "queue     2 / 10000" in lines
    assert "checks    listener ok, bridge ok" in lines
    assert lines[5].startswith("failures  3 open (malformed_event 1, missing_event 2)")
    assert lines[-1].split() == [
        "!a:example.org", "Family", "2025-01-02", "03:04:05", "2025-01-02", "03:04:06", "m.text"
    ]  # fmt: skip


def msg(rowid: int, room: str, portal: str | None = None) -> verify.BridgeMessage:
    return verify.BridgeMessage(rowid, f"$e{rowid}", portal or room, None, room, portal)


def test_verify__tally_counts_per_room_and_lists_the_missing() -> None:
    rows = [msg(1, "a@g.us", "!a"), msg(2, "a@g.us", "!a"), msg(3, "b@g.us", "!b")]
    report = verify.tally(rows, {"$e1", "$e3"}, {"!a": 1, "!b": 4}, EVERY_ROOM)
    assert [(r.room_id, r.bridge, r.archived, r.archive_only) for r in report.rooms] == [
        ("!a", 2, 1, 0),
        ("!b", 1, 1, 3),
    ]
    assert [m.rowid for m in report.missing] == [2]
    text = verify.render(report)
    assert "missing: $e2 (bridge rowid 2, !a)" in text
    assert text.endswith("1 of 3 bridge messages missing from the archive")


def test_verify__rooms_the_archiver_skips_are_not_expected() -> None:
    only_a = roomfilter.RoomFilter.build(configured=("!a",), rows=(), auto_register=False)
    report = verify.tally([msg(1, "a@g.us", "!a"), msg(2, "b@g.us", "!b")], set(), {}, only_a)
    assert [m.rowid for m in report.missing] == [1]
    assert report.skipped_rooms == 1


def test_verify__disabled_room_row_is_skipped() -> None:
    rows = [models.MonitoredRoom(room_id="!a", enabled=False)]
    disabled = roomfilter.RoomFilter.build(configured=(), rows=rows, auto_register=False)
    report = verify.tally([msg(1, "a@g.us", "!a")], set(), {}, disabled)
    assert report.missing == []
    assert verify.render(report).endswith("all 0 bridge messages are archived")
