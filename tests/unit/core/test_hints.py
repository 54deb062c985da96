"""listener.core.hints: notification ranges kept as bounded, coalesced intervals, never lists."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from listener.core import hints

MAX = 2**63 - 1


def _covered(ranges: list[tuple[int, int]]) -> set[int]:
    return {r for lo, hi in ranges for r in range(lo, hi + 1)}


# --- merge / clamp ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("ranges", "merged"),
    [
        ([], []),
        ([(5, 9)], [(5, 9)]),
        ([(5, 9), (1, 2)], [(1, 2), (5, 9)]),
        ([(1, 4), (5, 9)], [(1, 9)]),  # adjacent joins
        ([(1, 10), (3, 4)], [(1, 10)]),  # contained
        ([(0, MAX), (7, 7)], [(0, MAX)]),
    ],
)
def test_merge__sorted_disjoint_cover(
    ranges: list[tuple[int, int]], merged: list[tuple[int, int]]
) -> None:
    assert hints.merge(ranges) == merged


@given(st.lists(st.tuples(st.integers(0, 200), st.integers(0, 40)), max_size=30))
def test_merge__covers_exactly_the_same_rowids(spans: list[tuple[int, int]]) -> None:
    ranges = [(lo, lo + width) for lo, width in spans]
    merged = hints.merge(ranges)
    assert _covered(merged) == _covered(ranges)
    assert all(a[1] + 1 < b[0] for a, b in itertools.pairwise(merged))


@pytest.mark.parametrize(
    ("lo", "hi", "floor", "ceiling", "expected"),
    [
        (0, MAX, 10, 99, (10, 99)),
        (5, 7, 10, 99, None),  # wholly below
        (100, 200, 10, 99, None),  # wholly above
        (20, 30, 10, 99, (20, 30)),
        (99, MAX, 0, 99, (99, 99)),
    ],
)
def test_clamp(
    lo: int, hi: int, floor: int, ceiling: int, expected: tuple[int, int] | None
) -> None:
    got = hints.clamp(hints.Hint(lo, hi, frozenset({7})), floor=floor, ceiling=ceiling)
    if expected is None:
        assert got is None
    else:
        assert got == hints.Hint(*expected, frozenset({7}))


# --- PendingRanges ---------------------------------------------------------------------------


def test_pending__take_merges_and_empties() -> None:
    pending = hints.PendingRanges()
    pending.add([(10, 12)], sender=101)
    pending.add([(13, 20), (40, 40)], sender=102)
    assert pending
    taken = pending.take()
    assert [(h.lo, h.hi) for h in taken] == [(10, 20), (40, 40)]
    assert taken[0].senders == {101, 102}
    assert not pending
    assert pending.take() == []


def test_pending__overflow_folds_into_one_covering_range() -> None:
    pending = hints.PendingRanges(max_ranges=4)
    pending.add([(1, 1), (3, 3), (5, 5)])
    pending.add([(100, 100), (200, 200)])  # 5 > 4: fold
    assert pending.folds == 1
    assert [(h.lo, h.hi) for h in pending.take()] == [(1, 200)]


def test_pending__memory_is_bounded_whatever_arrives() -> None:
    pending = hints.PendingRanges(max_ranges=64)
    for i in range(10_000):
        pending.add([(i * 10, i * 10 + 1)] * 3, sender=i)
        assert len(pending._ranges) <= 64
        assert len(pending._senders) <= hints.MAX_SENDERS
    taken = pending.take()
    assert len(taken) <= 65
    # Nothing that arrived is outside what is taken: hints widen, never vanish.
    assert taken[0].lo == 0
    assert taken[-1].hi == 9999 * 10 + 1


@given(st.lists(st.lists(st.tuples(st.integers(0, 500), st.integers(0, 20)), max_size=8)))
def test_pending__everything_added_is_covered_by_what_is_taken(
    notes: list[list[tuple[int, int]]],
) -> None:
    pending = hints.PendingRanges(max_ranges=10)
    added: set[int] = set()
    for note in notes:
        ranges = [(lo, lo + w) for lo, w in note]
        pending.add(ranges)
        added |= _covered(ranges)
    assert added <= _covered([(h.lo, h.hi) for h in pending.take()])


# --- RangeBacklog ----------------------------------------------------------------------------


def test_backlog__bounded_by_joining_the_closest_neighbours() -> None:
    backlog = hints.RangeBacklog(max_ranges=3)
    backlog.extend([hints.Hint(0, 0), hints.Hint(10, 10), hints.Hint(12, 12), hints.Hint(100, 100)])
    assert len(backlog) == 3
    assert [(h.lo, h.hi) for h in backlog._hints] == [(0, 0), (10, 12), (100, 100)]


def test_backlog__pages_through_the_first_range() -> None:
    backlog = hints.RangeBacklog()
    backlog.extend([hints.Hint(5, 50), hints.Hint(60, 70)])
    backlog.next_page(20)
    assert backlog.first() == hints.Hint(21, 50)
    backlog.next_page(None)  # the rest of it had no more rows
    assert backlog.first() == hints.Hint(60, 70)
    backlog.next_page(70)
    assert not backlog


# --- TokenBucket / WarningGate ---------------------------------------------------------------


def test_bucket__rate_and_burst() -> None:
    bucket = hints.TokenBucket(rate_per_s=100.0, burst=50)
    assert bucket.available(0.0) == 50
    bucket.spend(50, 0.0)
    assert bucket.available(0.0) == 0
    assert bucket.wait_s(10, 0.0) == pytest.approx(0.1)
    assert bucket.available(0.25) == 25
    assert bucket.available(100.0) == 50  # never more than the burst


@settings(max_examples=50)
@given(st.lists(st.tuples(st.floats(0, 0.5), st.integers(1, 40)), min_size=1, max_size=200))
def test_bucket__never_allows_more_than_burst_plus_rate_times_time(
    steps: list[tuple[float, int]],
) -> None:
    bucket = hints.TokenBucket(rate_per_s=100.0, burst=50)
    now = spent = 0.0
    for delay, want in steps:
        now += delay
        grant = min(want, bucket.available(now))
        if grant > 0:
            bucket.spend(grant, now)
            spent += grant
    assert spent <= 50 + 100.0 * now + 1e-6


def test_warning_gate__one_per_interval_counts_the_rest() -> None:
    gate = hints.WarningGate(interval_s=60.0)
    assert gate.allow(0.0) == 0
    assert gate.allow(1.0) is None
    assert gate.allow(59.0) is None
    assert gate.allow(61.0) == 2
    assert gate.allow(62.0) is None
