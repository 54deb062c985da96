"""Parse the NOTIFY payloads that sql/triggers.sql sends (pure).

Contract (docs/ARCHITECTURE.md): ``{"v":1,"table":"message","op":"INSERT","ranges":[[lo,hi],...]}``
with inclusive, ascending, disjoint rowid ranges. Anything else on our channel is not ours and
raises :class:`~listener.core.errors.PayloadError`; the caller counts it and schedules a catch-up.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from itertools import pairwise
from typing import Literal, cast

from listener.core import errors

Op = Literal["INSERT", "UPDATE", "DELETE"]

VERSION = 1
OPS: frozenset[str] = frozenset(("INSERT", "UPDATE", "DELETE"))
# PostgreSQL refuses NOTIFY payloads of 8000 bytes or more; the trigger stays under 7900.
MAX_PAYLOAD_BYTES = 8000
# The trigger collapses longer lists to one covering range (sql/triggers.sql max_ranges).
MAX_RANGES = 1000
MAX_ROWID = 2**63 - 1  # BIGINT
_KEYS = frozenset(("v", "table", "op", "ranges"))
_MAX_TABLE_BYTES = 63  # PostgreSQL identifiers (NAMEDATALEN - 1)


@dataclass(frozen=True, slots=True)
class Notification:
    """The rows one statement touched: ``ranges`` are inclusive, ascending and disjoint."""

    op: Op
    table: str
    ranges: tuple[tuple[int, int], ...]

    @property
    def rowid_count(self) -> int:
        """How many rowids the ranges cover (a collapsed range may cover rowids never used)."""
        return rowid_count(self.ranges)


def rowid_count(ranges: tuple[tuple[int, int], ...]) -> int:
    """How many rowids the inclusive ``ranges`` cover."""
    return sum(hi - lo + 1 for lo, hi in ranges)


def parse_notification(payload: str) -> Notification:
    """The notification in ``payload``; :class:`errors.PayloadError` if it is not one of ours."""
    document = _load(payload)
    if set(document) != _KEYS:
        raise errors.PayloadError(f"payload keys {sorted(document)} are not {sorted(_KEYS)}")
    version = document["v"]
    if type(version) is not int or version != VERSION:
        raise errors.PayloadError(f"unsupported payload version {version!r}")
    return Notification(
        op=_op(document["op"]),
        table=_table(document["table"]),
        ranges=_ranges(document["ranges"]),
    )


def _load(payload: str) -> dict[str, object]:
    if not isinstance(payload, str):
        raise errors.PayloadError(f"payload is {type(payload).__name__}, not str")
    if len(payload.encode("utf-8", "surrogatepass")) >= MAX_PAYLOAD_BYTES:
        raise errors.PayloadError(f"payload is {MAX_PAYLOAD_BYTES} bytes or longer")
    try:
        document = json.loads(
            payload, object_pairs_hook=_no_duplicate_keys, parse_constant=_no_constant
        )
    except (ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
        raise errors.PayloadError(f"payload is not JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise errors.PayloadError("payload is not a JSON object")
    return cast(dict[str, object], document)


def _no_duplicate_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    document = dict(pairs)
    if len(document) != len(pairs):
        raise ValueError("duplicate key in object")
    return document


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not valid JSON")


def _op(value: object) -> Op:
    if not isinstance(value, str) or value not in OPS:
        raise errors.PayloadError(f"unknown op {value!r}")
    return cast(Op, value)


def _table(value: object) -> str:
    if not isinstance(value, str) or not value or len(value.encode()) > _MAX_TABLE_BYTES:
        raise errors.PayloadError(f"bad table {value!r}")
    return value


def _ranges(value: object) -> tuple[tuple[int, int], ...]:
    # An empty list is a bare wake-up: tables without a rowid (reaction) send one.
    if not isinstance(value, list):
        raise errors.PayloadError("ranges is not a list")
    if len(value) > MAX_RANGES:
        raise errors.PayloadError(f"{len(value)} ranges, more than {MAX_RANGES}")
    ranges = tuple(_range(item) for item in value)
    for (_, previous_hi), (lo, _) in pairwise(ranges):
        if lo <= previous_hi:
            raise errors.PayloadError("ranges are not ascending and disjoint")
    return ranges


def _range(item: object) -> tuple[int, int]:
    if not isinstance(item, list) or len(item) != 2:
        raise errors.PayloadError(f"range {item!r} is not a [lo, hi] pair")
    lo, hi = item
    # bool is an int subclass: true/false are not rowids.
    if type(lo) is not int or type(hi) is not int:
        raise errors.PayloadError(f"range {item!r} holds non-integers")
    if not 0 <= lo <= hi <= MAX_ROWID:
        raise errors.PayloadError(f"range {item!r} is not 0 <= lo <= hi <= {MAX_ROWID}")
    return lo, hi
