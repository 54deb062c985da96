"""Unit conversions for the sources' clocks. Pure.

The bridge stores Unix nanoseconds, Synapse Unix milliseconds; the archive holds timestamptz
(microseconds).
"""

from __future__ import annotations

from datetime import UTC, datetime


def from_ns(timestamp_ns: int) -> datetime:
    seconds, ns = divmod(timestamp_ns, 1_000_000_000)
    return datetime.fromtimestamp(seconds, tz=UTC).replace(microsecond=ns // 1000)


def from_ms(timestamp_ms: int) -> datetime:
    seconds, ms = divmod(timestamp_ms, 1000)
    return datetime.fromtimestamp(seconds, tz=UTC).replace(microsecond=ms * 1000)
