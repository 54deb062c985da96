"""listener.core.tracker: the rowid cursor (every rowid at or below it is resolved).

Times are plain numbers passed as ``now``; the tracker never reads a clock. Every tracker here
has ``gap_timeout_s=TIMEOUT``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import pytest

from listener.core import tracker

try:
    import hypothesis
    from hypothesis import strategies as st
except ImportError:  # pragma: no cover - hypothesis is a test extra
    hypothesis = None  # type: ignore[assignment]

TIMEOUT = 100.0


def _tracker(cursor: int = 0) -> tracker.RowidTracker:
    return tracker.RowidTracker(cursor, gap_timeout_s=TIMEOUT)


def _process(t: tracker.RowidTracker, rowids: list[int], *, now: float) -> int:
    """Claim, complete and advance in one go, as a worker does for one batch."""
    t.complete(t.claim_new(rowids, now=now))
    return t.advance(now=now)


# --- in-order completion -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "rowids", "expected_cursor"),
    [
        pytest.param(0, [1], 1, id="one-row"),
        pytest.param(0, [1, 2, 3, 4, 5], 5, id="contiguous-batch"),
        pytest.param(0, [3, 1, 2], 3, id="unsorted-input"),
        pytest.param(41, [42, 43], 43, id="resumed-cursor"),
        pytest.param(0, [], 0, id="nothing-visible"),
    ],
)
def test_tracker__advances_over_contiguous_completed_rows(
    start: int, rowids: list[int], expected_cursor: int
) -> None:
    t = _tracker(start)

    assert _process(t, rowids, now=0.0) == expected_cursor
    assert t.cursor == expected_cursor
    assert t.in_flight == 0


def test_tracker__advances_batch_by_batch_in_order() -> None:
    t = _tracker()

    cursors = [
        _process(t, list(batch), now=float(i))
        for i, batch in enumerate([range(1, 4), range(4, 8), range(8, 9)])
    ]

    assert cursors == [3, 7, 8]


def test_tracker__claim_new_returns_sorted_unique_rowids() -> None:
    t = _tracker()

    assert t.claim_new([5, 3, 4, 3, 5, 1, 2], now=0.0) == [1, 2, 3, 4, 5]
    assert t.in_flight == 5
    assert t.max_known == 5


# --- out-of-order commit -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("advance_at", "expected_cursor"),
    [
        pytest.param(0.0, 9, id="hole-just-seen"),
        pytest.param(TIMEOUT - 0.001, 9, id="hole-not-yet-expired"),
        pytest.param(TIMEOUT + 0.001, 11, id="hole-expired"),
        pytest.param(TIMEOUT * 50, 11, id="hole-long-expired"),
    ],
)
def test_tracker__holds_cursor_behind_uncommitted_gap(
    advance_at: float, expected_cursor: int
) -> None:
    t = _tracker(9)
    # rowid 10 is allocated but its transaction has not committed; 11 is visible and archived.
    t.complete(t.claim_new([11], now=0.0))

    assert t.advance(now=advance_at) == expected_cursor


def test_tracker__late_commit_inside_gap_releases_cursor_when_done() -> None:
    t = _tracker(9)
    t.complete(t.claim_new([11], now=0.0))
    assert t.advance(now=1.0) == 9

    assert t.claim_new([10], now=2.0) == [10]
    assert t.advance(now=3.0) == 9  # 10 is claimed, not done
    t.complete([10])

    assert t.advance(now=4.0) == 11
    assert t.in_flight == 0


def test_tracker__gap_clock_starts_when_gap_is_first_seen_not_at_later_claims() -> None:
    t = _tracker(0)
    t.complete(t.claim_new([1, 3], now=0.0))  # hole at 2 since t=0
    t.complete(t.claim_new([4, 5], now=TIMEOUT * 0.9))  # no new hole; 2's clock keeps running

    assert t.advance(now=TIMEOUT * 0.95) == 1
    assert t.advance(now=TIMEOUT + 1) == 5


def test_tracker__each_gap_has_its_own_clock() -> None:
    t = _tracker(0)
    t.complete(t.claim_new([1, 3], now=0.0))  # hole {2} since 0
    t.complete(t.claim_new([5], now=50.0))  # hole {4} since 50

    assert t.advance(now=TIMEOUT + 10) == 3  # {2} expired at 100, {4} only at 150
    assert t.advance(now=50 + TIMEOUT + 1) == 5


def test_tracker__multi_row_gap_is_stepped_over_in_one_advance() -> None:
    t = _tracker(0)
    t.complete(t.claim_new([1, 10], now=0.0))  # hole 2..9

    assert t.advance(now=TIMEOUT - 1) == 1
    assert t.advance(now=TIMEOUT + 1) == 10


# --- claimed rows hold the cursor forever ---------------------------------------------------


@pytest.mark.parametrize("advance_at", [0.0, TIMEOUT + 1, TIMEOUT * 1000, 1e12])
def test_tracker__claimed_row_holds_cursor_regardless_of_time(advance_at: float) -> None:
    t = _tracker(0)
    t.claim_new([1, 2, 3], now=0.0)
    t.complete([1, 3])

    assert t.advance(now=advance_at) == 1
    assert t.in_flight == 1


@pytest.mark.parametrize(
    ("claimed_inside_gap", "expected_cursor"),
    [
        pytest.param(2, 1, id="claimed-at-gap-start"),
        pytest.param(5, 4, id="claimed-mid-gap"),
        pytest.param(9, 8, id="claimed-at-gap-end"),
    ],
)
def test_tracker__expired_gap_is_stepped_over_only_up_to_next_claimed_row(
    claimed_inside_gap: int, expected_cursor: int
) -> None:
    t = _tracker(0)
    t.complete(t.claim_new([1, 10], now=0.0))  # hole 2..9 since 0
    assert t.claim_new([claimed_inside_gap], now=TIMEOUT / 2) == [claimed_inside_gap]

    assert t.advance(now=TIMEOUT * 10) == expected_cursor


def test_tracker__rest_of_expired_gap_is_stepped_once_claimed_row_completes() -> None:
    t = _tracker(0)
    t.complete(t.claim_new([1, 10], now=0.0))  # hole 2..9 since 0
    t.claim_new([5], now=1.0)
    assert t.advance(now=TIMEOUT + 1) == 4

    t.complete([5])

    # 6..9 belong to the hole first seen at 0, so they are already expired.
    assert t.advance(now=TIMEOUT + 2) == 10


def test_tracker__completed_row_inside_unexpired_gap_does_not_move_cursor() -> None:
    t = _tracker(0)
    t.complete(t.claim_new([1, 10], now=0.0))
    t.complete(t.claim_new([2, 3, 5], now=1.0))

    assert t.advance(now=2.0) == 3  # 4 is still an unexpired hole
    assert t.advance(now=TIMEOUT + 1) == 10


# --- rows at or below the cursor -----------------------------------------------------------


@pytest.mark.parametrize(
    "late_rowids",
    [
        pytest.param([10], id="skipped-hole-row"),
        pytest.param([3], id="already-archived-row"),
        pytest.param([3, 10], id="several"),
    ],
)
def test_tracker__rows_at_or_below_cursor_are_returned_and_never_move_cursor(
    late_rowids: list[int],
) -> None:
    t = _tracker(0)
    t.complete(t.claim_new([*range(1, 10), 11], now=0.0))
    assert t.advance(now=TIMEOUT + 1) == 11  # hole 10 given up on

    for attempt in range(3):  # returned every time: archiving them again is idempotent
        assert t.claim_new(late_rowids, now=TIMEOUT + 2 + attempt) == late_rowids
    assert t.in_flight == 0
    assert t.max_known == 11
    t.complete(late_rowids)
    assert t.advance(now=TIMEOUT * 10) == 11


def test_tracker__late_row_mixed_with_new_rows_is_returned_alongside_them() -> None:
    t = _tracker(20)

    assert t.claim_new([19, 21, 22], now=0.0) == [19, 21, 22]
    assert t.in_flight == 2  # 19 is below the cursor: not tracked


# --- claim_new dedupes ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("first", "second", "second_returns"),
    [
        pytest.param([5], [5], [], id="same-row-again"),
        pytest.param([5, 6], [6, 7], [7], id="overlap"),
        pytest.param([1, 2, 3], [3, 2, 1], [], id="reordered"),
    ],
)
def test_tracker__claim_new_returns_a_claimed_row_once(
    first: list[int], second: list[int], second_returns: list[int]
) -> None:
    t = _tracker(0)
    t.claim_new(first, now=0.0)

    assert t.claim_new(second, now=1.0) == second_returns
    assert t.in_flight == len(set(first) | set(second))


def test_tracker__claim_new_does_not_return_a_done_row_still_above_cursor() -> None:
    t = _tracker(0)
    t.complete(t.claim_new([2], now=0.0))  # 1 is a hole: cursor stays at 0, 2 is done

    assert t.advance(now=1.0) == 0
    assert t.claim_new([2], now=2.0) == []
    assert t.in_flight == 0


# --- restart -------------------------------------------------------------------------------


def test_tracker__restart_gap_between_cursor_and_first_visible_row_starts_clock_at_claim() -> None:
    restarted_at = 5_000.0
    t = _tracker(100)

    t.complete(t.claim_new([105], now=restarted_at))

    assert t.max_known == 105
    assert t.advance(now=restarted_at + TIMEOUT - 1) == 100
    assert t.advance(now=restarted_at + TIMEOUT + 1) == 105


def test_tracker__restart_gap_row_committing_late_is_archived_and_releases_cursor() -> None:
    t = _tracker(100)
    t.complete(t.claim_new([105], now=0.0))

    assert t.claim_new([103, 101, 102, 104], now=1.0) == [101, 102, 103, 104]
    t.complete([101, 102, 103, 104])

    assert t.advance(now=2.0) == 105


# --- scale ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "rowids", "held", "stepped"),
    [
        pytest.param(0, [1, 1_000_000], 1, 1_000_000, id="sparse-pair"),
        pytest.param(0, [1_000_000_000_000], 0, 1_000_000_000_000, id="huge-first-rowid"),
        pytest.param(7, [1_000_000, 2_000_000, 3_000_000], 7, 3_000_000, id="three-islands"),
    ],
)
def test_tracker__large_sparse_gaps_are_handled_quickly(
    start: int, rowids: list[int], held: int, stepped: int
) -> None:
    t = _tracker(start)

    t.complete(t.claim_new(rowids, now=0.0))
    cursor_while_held = t.advance(now=1.0)
    cursor_after_timeout = t.advance(now=TIMEOUT + 1)

    assert (cursor_while_held, cursor_after_timeout) == (held, stepped)


def test_tracker__many_interleaved_gaps_are_stepped_over_quickly() -> None:
    count = 10_000
    t = _tracker(0)
    visible = list(range(2, 2 * count + 1, 2))  # every odd rowid is a hole
    t.complete(t.claim_new(visible, now=0.0))

    cursor = t.advance(now=TIMEOUT + 1)

    # No timing assertion (timings belong in bench/); a quadratic advance() makes this test
    # take seconds instead of milliseconds, which the suite's duration report shows.
    assert cursor == 2 * count


# --- property: random interleavings ---------------------------------------------------------


@dataclass
class _Model:
    """What the cursor is allowed to do, tracked independently of the tracker's structures."""

    cursor: int
    max_known: int
    now: float = 0.0
    hole_since: dict[int, float] = field(default_factory=dict)
    claimed: set[int] = field(default_factory=set)
    completed: set[int] = field(default_factory=set)

    def expired(self, rowid: int) -> bool:
        return rowid in self.hole_since and self.now - self.hole_since[rowid] >= TIMEOUT

    def may_pass(self, rowid: int) -> bool:
        if rowid in self.claimed:
            return False
        return rowid in self.completed or self.expired(rowid)


def _do_claim(t: tracker.RowidTracker, m: _Model, rowids: list[int]) -> None:
    cursor_before = t.cursor
    returned = t.claim_new(rowids, now=m.now)

    visible = set(rowids)
    expected = sorted(r for r in visible if r <= cursor_before or r not in m.claimed | m.completed)
    assert returned == expected
    new_max = max([m.max_known, *visible])
    for r in range(m.max_known + 1, new_max + 1):
        if r not in visible:
            m.hole_since[r] = m.now
    m.max_known = new_max
    m.claimed.update(r for r in returned if r > cursor_before)
    assert t.cursor == cursor_before
    assert t.max_known == m.max_known


def _do_complete(t: tracker.RowidTracker, m: _Model, picks: list[int]) -> None:
    pending = sorted(m.claimed)
    chosen = {pending[i % len(pending)] for i in picks} if pending else set()
    t.complete(chosen)
    m.claimed -= chosen
    m.completed |= chosen


def _do_advance(t: tracker.RowidTracker, m: _Model) -> None:
    before = m.cursor
    after = t.advance(now=m.now)

    assert after == t.cursor
    assert before <= after <= m.max_known
    passed = [r for r in range(before + 1, after + 1) if not m.may_pass(r)]
    assert passed == [], f"cursor {before}->{after} at t={m.now} passed blocked rowids"
    # ...and it went as far as it may: the next rowid really blocks it.
    nxt = after + 1
    assert nxt > m.max_known or not m.may_pass(nxt)
    m.cursor = after


Op = tuple[str, float, list[int]]


def _run_interleaving(start: int, ops: list[Op]) -> None:
    t = _tracker(start)
    m = _Model(cursor=start, max_known=start)
    for kind, dt, numbers in ops:
        m.now += dt
        if kind == "claim":
            _do_claim(t, m, [start + n for n in numbers])
        elif kind == "complete":
            _do_complete(t, m, numbers)
        else:
            _do_advance(t, m)
        assert t.in_flight == len(m.claimed)

    # Everything done and every hole expired: the cursor reaches max_known.
    t.complete(set(m.claimed))
    m.completed |= m.claimed
    m.claimed.clear()
    m.now += TIMEOUT
    _do_advance(t, m)
    assert t.cursor == m.max_known
    assert t.in_flight == 0


def _random_ops(rng: random.Random) -> list[Op]:
    ops: list[Op] = []
    for _ in range(rng.randrange(1, 40)):
        kind = rng.choice(["claim", "claim", "complete", "advance", "advance"])
        dt = rng.choice([0.0, 1.0, TIMEOUT / 4, TIMEOUT / 2, TIMEOUT - 1, TIMEOUT, TIMEOUT + 1])
        numbers = [rng.randrange(-3, 40) for _ in range(rng.randrange(0, 8))]
        ops.append((kind, dt, numbers))
    return ops


@pytest.mark.parametrize("seed", range(300))
def test_tracker__random_interleavings_never_pass_blocked_rowids_seeded(seed: int) -> None:
    rng = random.Random(seed)
    _run_interleaving(rng.randrange(0, 1000), _random_ops(rng))


if hypothesis is not None:
    _ops = st.lists(
        st.tuples(
            st.sampled_from(["claim", "complete", "advance"]),
            st.sampled_from([0.0, 1.0, TIMEOUT / 2, TIMEOUT - 1, TIMEOUT, TIMEOUT + 1]),
            st.lists(st.integers(min_value=-3, max_value=40), max_size=8),
        ),
        max_size=50,
    )

    @hypothesis.settings(max_examples=300, deadline=None, database=None)
    @hypothesis.given(start=st.integers(min_value=0, max_value=2**40), ops=_ops)
    def test_tracker__random_interleavings_never_pass_blocked_rowids(
        start: int, ops: list[Op]
    ) -> None:
        _run_interleaving(start, ops)


# --- what a notification may still refer to --------------------------------------------------


def test_unseen_within__fresh_tracker_everything_above_the_cursor() -> None:
    t = _tracker(cursor=10)
    assert t.unseen_within(0, 2**63 - 1) == [(11, 2**63 - 1)]
    assert t.unseen_within(0, 10) == []


def test_unseen_within__holes_and_the_region_above_the_newest_row() -> None:
    t = _tracker(cursor=0)
    t.claim_new([1, 2, 5, 6, 9], now=0.0)  # holes 3-4 and 7-8
    assert t.unseen_within(0, 100) == [(3, 4), (7, 8), (10, 100)]
    assert t.unseen_within(5, 6) == []  # claimed already: nothing to read again
    t.complete([1, 2])
    assert t.advance(now=1.0) == 2
    assert t.unseen_within(0, 8) == [(3, 4), (7, 8)]


def test_unseen_within__holes_given_up_on_stay_readable_below_the_cursor() -> None:
    t = _tracker(cursor=0)
    _process(t, [1, 2, 5], now=0.0)  # hole 3-4
    assert t.advance(now=TIMEOUT + 1) == 5
    assert t.skipped_holes == [(3, 4)]
    assert t.unseen_within(0, 10) == [(3, 4), (6, 10)]
    assert t.claim_new([4], now=TIMEOUT + 2) == [4]  # a late commit is still archived


def test_skipped_holes__bounded() -> None:
    t = _tracker(cursor=0)
    for i in range(tracker.MAX_SKIPPED_HOLES + 50):
        _process(t, [3 * i + 1, 3 * i + 3], now=0.0)  # a hole at every 3i+2
    t.advance(now=TIMEOUT + 1)
    assert len(t.skipped_holes) == tracker.MAX_SKIPPED_HOLES


# --- gaps settled by a snapshot (restart-proof, no clock) ------------------------------------

SNAP = tracker.Snapshot


def _sweep(
    t: tracker.RowidTracker, rowids: list[int], snap: tracker.Snapshot, *, now: float
) -> int:
    """One full sweep page from the cursor: claim, settle, complete, advance."""
    after = t.cursor
    fresh = t.claim_new(rowids, now=now)
    t.settle(after=after, through=tracker.MAX_ROWID, snapshot=snap)
    t.complete(fresh)
    return t.advance(now=now)


def test_settle__a_gap_with_no_transaction_in_flight_is_final_at_once() -> None:
    t = _tracker()
    # xmin == xmax: nothing was running when the read's snapshot was taken.
    assert _sweep(t, [1, 2, 5], SNAP(100, 100), now=0.0) == 5
    assert t.settled == 1
    assert t.timed_out == 0
    assert t.skipped_holes == [(3, 4)]


def test_settle__waits_for_every_transaction_running_when_the_gap_was_seen() -> None:
    t = _tracker()
    assert _sweep(t, [1, 2, 5], SNAP(90, 100), now=0.0) == 2  # xid 90..99 may hold 3 and 4
    assert _sweep(t, [5], SNAP(95, 104), now=1.0) == 2  # some of them still running
    # The transaction holding 3 committed: its row is read, and 4 is final now.
    assert _sweep(t, [3, 5], SNAP(100, 104), now=2.0) == 5
    assert t.settled == 1


def test_settle__a_filtered_or_partial_read_settles_nothing_beyond_it() -> None:
    t = _tracker()
    fresh = t.claim_new([1, 5, 9], now=0.0)
    # This page only covered (0, 5]: the hole 6..8 is not proven by it.
    t.settle(after=0, through=5, snapshot=SNAP(50, 50))
    t.complete(fresh)
    assert t.advance(now=0.0) == 5
    assert t.blocking_gap() == (6, 0.0)
    t.settle(after=5, through=tracker.MAX_ROWID, snapshot=SNAP(50, 50))
    assert t.advance(now=0.0) == 9


def test_settle__pages_of_one_sweep_prove_together() -> None:
    t = _tracker()
    first = t.claim_new([1, 3], now=0.0)
    t.settle(after=0, through=3, snapshot=SNAP(10, 10))
    second = t.claim_new([6, 7], now=0.0)
    t.settle(after=3, through=tracker.MAX_ROWID, snapshot=SNAP(12, 12))
    t.complete([*first, *second])
    assert t.advance(now=0.0) == 7


def test_settle__off_when_rowids_are_not_handed_out_in_order() -> None:
    t = tracker.RowidTracker(0, gap_timeout_s=TIMEOUT, settle_by_snapshot=False)
    assert _sweep(t, [1, 3], SNAP(5, 5), now=0.0) == 1
    assert _sweep(t, [1, 3], SNAP(5, 5), now=TIMEOUT + 1) == 3
    assert t.timed_out == 1


def test_gap_since__a_previous_process_clock_counts() -> None:
    # The last process saw the gap at rowid 3 at t=10; this one starts at t=1000.
    t = tracker.RowidTracker(
        2, gap_timeout_s=TIMEOUT, gap_since=(3, 10.0), settle_by_snapshot=False
    )
    t.complete(t.claim_new([4], now=1000.0))
    assert t.blocking_gap() == (3, 10.0)
    assert t.advance(now=1000.0) == 4  # 990 s since it was first seen: past the timeout


def test_blocking_gap__none_when_the_next_row_is_in_flight_or_beyond() -> None:
    t = _tracker()
    assert t.blocking_gap() is None
    t.claim_new([1, 3], now=5.0)
    assert t.blocking_gap() is None  # 1 is claimed, not a gap
    t.complete([1])
    t.advance(now=5.0)
    assert t.blocking_gap() == (2, 5.0)
