"""``archiver-db status``: what the archive says about the archiver (cursor, heartbeat, failures,
last message per room), as a table or JSON. Reads the archive only.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from listener.ops import archive_stats, probes
from listener.sinks import protocol

# A heartbeat older than this many save intervals means the service is not running (or stuck).
STALE_INTERVALS = 3


@dataclass
class Snapshot:
    cursor: int | None
    heartbeat: dict[str, Any] | None
    heartbeat_age_s: float | None
    failures: dict[str, int] = field(default_factory=dict)
    rooms: list[dict[str, Any]] = field(default_factory=list)
    # Messages of encrypted rooms by decryption status ('' = ciphertext): (messages, rooms).
    encrypted: dict[str, tuple[int, int]] = field(default_factory=dict)

    def service_state(self, *, heartbeat_interval_s: float) -> str:
        if self.heartbeat is None or self.heartbeat_age_s is None:
            return "never ran (no heartbeat)"
        if self.heartbeat_age_s > STALE_INTERVALS * heartbeat_interval_s:
            return "not running (stale heartbeat)"
        return "running" if self.heartbeat.get("ready") else "running, not ready"

    def as_json(self, *, heartbeat_interval_s: float) -> dict[str, Any]:
        return {
            "service": self.service_state(heartbeat_interval_s=heartbeat_interval_s),
            "cursor": self.cursor,
            "heartbeat": self.heartbeat,
            "heartbeat_age_s": _round(self.heartbeat_age_s),
            "failures_open": self.failures,
            "encrypted": {
                (status or "ciphertext"): {"messages": n, "rooms": rooms}
                for status, (n, rooms) in sorted(self.encrypted.items())
            },
            "rooms": self.rooms,
        }


async def snapshot(db: archive_stats.Queryable) -> Snapshot:
    state = await archive_stats.states(db, [protocol.CURSOR_KEY, probes.HEARTBEAT_KEY])
    cursor = state.get(protocol.CURSOR_KEY)
    beat = state.get(probes.HEARTBEAT_KEY)
    failures = {r["kind"]: int(r["n"]) for r in await archive_stats.failures_by_kind(db)}
    rooms = [
        {
            "room_id": r["room_id"],
            "room_name": r["room_name"],
            "last_message_at": _iso(r["timestamp"]),
            "archived_at": _iso(r["archived_at"]),
            "event_id": r["event_id"],
            "message_type": r["message_type"],
        }
        for r in await archive_stats.last_per_room(db)
    ]
    return Snapshot(
        cursor=int(cursor.value["rowid"]) if cursor else None,
        heartbeat=beat.value if beat else None,
        heartbeat_age_s=beat.age_s if beat else None,
        failures=failures,
        rooms=rooms,
        encrypted=await archive_stats.decryption_counts(db),
    )


def render(snap: Snapshot, *, heartbeat_interval_s: float, now_s: float | None = None) -> str:
    """The human table (pure)."""
    beat = snap.heartbeat or {}
    lines = [
        _row("service", _service_line(snap, heartbeat_interval_s, now_s or time.time())),
        _row("cursor", f"rowid {snap.cursor}" if snap.cursor is not None else "none saved yet"),
        _row("lag", f"{beat['rowid_lag']} rows" if "rowid_lag" in beat else "unknown"),
        _row("queue", f"{beat.get('queue_depth', '?')} / {beat.get('queue_capacity', '?')}"),
        _row("checks", _checks(beat.get("checks"))),
        _row("failures", _failures(snap.failures)),
        *([_row("encrypted", _encrypted(snap.encrypted))] if snap.encrypted else []),
        "",
    ]
    if not snap.rooms:
        return "\n".join([*lines, "no archived messages yet"])
    header = ("room", "name", "last message (UTC)", "archived at (UTC)", "type")
    table = [header] + [
        (
            r["room_id"] or "",
            (r["room_name"] or "")[:30],
            r["last_message_at"] or "",
            r["archived_at"] or "",
            r["message_type"] or "",
        )
        for r in snap.rooms
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines)


def _service_line(snap: Snapshot, interval_s: float, now_s: float) -> str:
    state = snap.service_state(heartbeat_interval_s=interval_s)
    beat = snap.heartbeat
    if beat is None or snap.heartbeat_age_s is None:
        return state
    up_s = now_s - float(beat.get("started_at") or now_s)
    return (
        f"{state}; heartbeat {_duration(snap.heartbeat_age_s)} ago from pid {beat.get('pid')} "
        f"on {beat.get('host')} (v{beat.get('version')}, up {_duration(up_s)})"
    )


def _checks(checks: dict[str, bool] | None) -> str:
    if not checks:
        return "unknown"
    return ", ".join(f"{name} {'ok' if ok else 'DOWN'}" for name, ok in checks.items())


def _failures(failures: dict[str, int]) -> str:
    if not failures:
        return "none open"
    detail = ", ".join(f"{kind} {n}" for kind, n in sorted(failures.items()))
    return f"{sum(failures.values())} open ({detail}); see `archiver-db retry-failures`"


def _encrypted(counts: dict[str, tuple[int, int]]) -> str:
    messages = sum(n for n, _rooms in counts.values())
    detail = ", ".join(
        f"{n} {status or 'ciphertext'}" for status, (n, _rooms) in sorted(counts.items())
    )
    text = f"{messages} messages in encrypted rooms ({detail})"
    if "" in counts:
        text += "; set BRIDGE_PICKLE_KEY to decrypt the ciphertext ones"
    elif "no_session" in counts:
        text += "; no_session ones are decrypted when their key arrives"
    return text


def _row(label: str, text: str) -> str:
    return f"{label:<10}{text}"


def _duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172_800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if value else None


def _round(value: float | None) -> float | None:
    return round(value, 1) if value is not None else None
