"""Notification ranges as hints: coalesced, bounded, clamped to what the bridge table holds. Pure.

Any role that may connect to the bridge database can NOTIFY our channel, so a range in a
notification is never a list of work: it only says "something may have changed in this region".
Ranges are kept as intervals, never expanded into rowids; the rowids to archive are read from
the table by SQL inside the clamped intervals (:mod:`listener.flow.hint_reader`), so the work
done is proportional to the rows that exist, never to the width of a range.

Memory is bounded whatever arrives: :class:`PendingRanges` holds at most ``max_ranges`` raw
ranges; past that it folds everything into one covering interval (wider hints are harmless: the
table is re-read, and archive writes are idempotent).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import islice

Range = tuple[int, int]  # inclusive

# How many sending backend PIDs a hint remembers (for the operator's warning), at most.
MAX_SENDERS = 4


@dataclass(frozen=True, slots=True)
class Hint:
    """An inclusive rowid interval that may hold changed rows, and who said so."""

    lo: int
    hi: int
    senders: frozenset[int] = frozenset()


@dataclass(slots=True)
class PendingRanges:
    """Ranges received and not read yet, bounded in memory whatever arrives.

    ``add`` costs O(len(ranges)) (at most the payload's own size); ``take`` sorts and merges
    what is pending, at most ``max_ranges`` items.
    """

    max_ranges: int = 4096
    _ranges: list[Range] = field(default_factory=list)
    _senders: set[int] = field(default_factory=set)
    _cover: Range | None = None
    folds: int = 0  # how often the buffer overflowed into the covering interval

    def add(self, ranges: Sequence[Range], sender: int | None = None) -> None:
        if not ranges:
            return
        if sender is not None and len(self._senders) < MAX_SENDERS:
            self._senders.add(sender)
        if len(self._ranges) + len(ranges) <= self.max_ranges:
            self._ranges.extend(ranges)
            return
        # Overflow: fold everything pending into one covering interval (O(n), no sort).
        self.folds += 1
        lows = [lo for lo, _ in ranges] + [lo for lo, _ in self._ranges]
        highs = [hi for _, hi in ranges] + [hi for _, hi in self._ranges]
        if self._cover is not None:
            lows.append(self._cover[0])
            highs.append(self._cover[1])
        self._cover = (min(lows), max(highs))
        self._ranges.clear()

    def __bool__(self) -> bool:
        return bool(self._ranges) or self._cover is not None

    def take(self) -> list[Hint]:
        """Everything pending as sorted, disjoint, merged hints; the buffer is emptied."""
        ranges = self._ranges
        if self._cover is not None:
            ranges.append(self._cover)
        senders = frozenset(self._senders)
        self._ranges, self._cover, self._senders = [], None, set()
        return [Hint(lo, hi, senders) for lo, hi in merge(ranges)]


def merge(ranges: Iterable[Range]) -> list[Range]:
    """Sorted, disjoint intervals covering exactly ``ranges`` (adjacent ones joined)."""
    merged: list[Range] = []
    for lo, hi in sorted(ranges):
        if merged and lo <= merged[-1][1] + 1:
            if hi > merged[-1][1]:
                merged[-1] = (merged[-1][0], hi)
        else:
            merged.append((lo, hi))
    return merged


def clamp(hint: Hint, *, floor: int, ceiling: int) -> Hint | None:
    """``hint`` cut to ``[floor, ceiling]``; None when nothing of it is left."""
    lo, hi = max(hint.lo, floor), min(hint.hi, ceiling)
    return Hint(lo, hi, hint.senders) if lo <= hi else None


@dataclass(slots=True)
class RangeBacklog:
    """Intervals still to be read, oldest work first, at most ``max_ranges`` of them.

    Past the bound, the two intervals closest together are joined (the gap between them is
    re-read: harmless), so the backlog never grows with what arrives.
    """

    max_ranges: int = 1024
    _hints: deque[Hint] = field(default_factory=deque)

    def __bool__(self) -> bool:
        return bool(self._hints)

    def __len__(self) -> int:
        return len(self._hints)

    def extend(self, hints: Iterable[Hint]) -> None:
        ranges = [(h.lo, h.hi) for h in self._hints] + [(h.lo, h.hi) for h in hints]
        senders = frozenset(
            islice({s for h in [*self._hints, *hints] for s in h.senders}, MAX_SENDERS)
        )
        merged = merge(ranges)
        while len(merged) > self.max_ranges:
            merged = _join_closest(merged, len(merged) - self.max_ranges)
        self._hints = deque(Hint(lo, hi, senders) for lo, hi in merged)

    def next_page(self, read_through: int | None) -> None:
        """The first interval has been read up to ``read_through`` (None: all of it)."""
        first = self._hints[0]
        if read_through is None or read_through >= first.hi:
            self._hints.popleft()
        else:
            self._hints[0] = Hint(read_through + 1, first.hi, first.senders)

    def first(self) -> Hint:
        return self._hints[0]


def _join_closest(ranges: list[Range], joins: int) -> list[Range]:
    """Join the ``joins`` smallest gaps between neighbouring intervals."""
    gaps = sorted(range(len(ranges) - 1), key=lambda i: ranges[i + 1][0] - ranges[i][1])
    closing = set(gaps[:joins])
    joined: list[Range] = []
    for index, (lo, hi) in enumerate(ranges):
        if index - 1 in closing:
            joined[-1] = (joined[-1][0], hi)
        else:
            joined.append((lo, hi))
    return joined


@dataclass(slots=True)
class TokenBucket:
    """At most ``rate_per_s`` units per second on average, ``burst`` at once. The caller passes
    the clock."""

    rate_per_s: float
    burst: float
    _tokens: float = -1.0
    _at: float = 0.0

    def _refill(self, now: float) -> None:
        if self._tokens < 0:
            self._tokens, self._at = self.burst, now
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate_per_s)
        self._at = now

    def available(self, now: float) -> int:
        self._refill(now)
        return int(self._tokens)

    def spend(self, units: int, now: float) -> None:
        self._refill(now)
        self._tokens -= units

    def wait_s(self, units: int, now: float) -> float:
        """Seconds until ``units`` (capped at the burst) are available."""
        self._refill(now)
        missing = min(units, self.burst) - self._tokens
        return max(0.0, missing / self.rate_per_s)


@dataclass(slots=True)
class WarningGate:
    """One warning per ``interval_s``; counts what it held back in between."""

    interval_s: float
    _last: float | None = None
    suppressed: int = 0

    def allow(self, now: float) -> int | None:
        """None to stay quiet; else how many warnings were held back since the last one."""
        if self._last is not None and now - self._last < self.interval_s:
            self.suppressed += 1
            return None
        held, self.suppressed, self._last = self.suppressed, 0, now
        return held
