"""The rowid cursor: which bridge rows are safely archived. Pure; the caller passes the clock.

A rowid is allocated when a bridge transaction inserts, not when it commits, so rows become
visible out of order: rowid 11 can commit before rowid 10. The cursor is the highest rowid such
that every rowid at or below it is resolved (archived, filtered out, or recorded as a failure).
A rowid above the cursor that is not visible yet is a *hole*: a transaction still in flight, one
that rolled back (identity values are never reused), or a row deleted since.

A hole is settled by what the database knows, not by a clock. The sweep reads the rows above the
cursor in one statement and reports that statement's snapshot (:meth:`RowidTracker.settle`).
Rowids come from a sequence with cache 1, so a missing rowid below a visible one was handed out
before that one, to a transaction already running when the snapshot was taken: its xid is below
the snapshot's ``xmax``. Once a later full read's snapshot has ``xmin`` at or past that ``xmax``,
every such transaction has ended, and what it committed was in that read: the hole is final.
Usually that is the very next sweep, milliseconds later, and it holds across restarts (a new
process settles the same way). A hole whose transaction stays open longer than
``gap_timeout_s`` is stepped over anyway (last resort; its start is persisted by the service, so
restarts do not reset it). A row that commits even later is still archived through its NOTIFY;
it just no longer holds the cursor (the holes stepped over are remembered, a bounded number of
them, so that such a NOTIFY is known to be real).
"""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

# Holes the cursor stepped over by timeout, remembered (newest) for late commits' notifications.
MAX_SKIPPED_HOLES = 256
MAX_ROWID = 2**63 - 1


@dataclass(slots=True)
class _Hole:
    lo: int
    hi: int
    since: float
    # xmax of the snapshot of the first full read that covered this hole: the transaction that
    # holds any of its rowids has an xid below it (see the module docstring).
    seen_xmax: int | None = None


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A statement's snapshot, as ``pg_snapshot_xmin``/``pg_snapshot_xmax`` report it."""

    xmin: int
    xmax: int


@dataclass(frozen=True, slots=True)
class _Proof:
    """Every row committed in ``(after, through]`` under a snapshot with ``xmin`` was read."""

    after: int
    through: int
    xmin: int


def _first_above(ordered: list[int], rowid: int, *, default: int) -> int:
    index = bisect.bisect_right(ordered, rowid)
    return ordered[index] if index < len(ordered) else default


class RowidTracker:
    def __init__(
        self,
        cursor: int,
        *,
        gap_timeout_s: float,
        gap_since: tuple[int, float] | None = None,
        settle_by_snapshot: bool = True,
    ) -> None:
        self.cursor = cursor
        self._gap_timeout_s = gap_timeout_s
        # (rowid, since): a hole at this rowid was first seen at ``since`` by an earlier process.
        self._gap_since = gap_since
        self._settle_by_snapshot = settle_by_snapshot
        self._proofs: list[_Proof] = []  # the pages of the last sweep, in rowid order
        self.settled = 0  # holes settled by a snapshot
        self.timed_out = 0  # holes stepped over by the timeout
        self._claimed: set[int] = set()
        self._done: set[int] = set()
        self._holes: list[_Hole] = []
        self._max_known = cursor
        self._skipped: deque[tuple[int, int]] = deque(maxlen=MAX_SKIPPED_HOLES)

    @property
    def in_flight(self) -> int:
        """Rows scheduled or being processed."""
        return len(self._claimed)

    @property
    def max_known(self) -> int:
        return self._max_known

    @property
    def skipped_holes(self) -> list[tuple[int, int]]:
        """Rowid ranges at or below the cursor that it stepped over without seeing them (a
        transaction still open after ``gap_timeout_s``, or rolled back): the only rowids below
        the cursor that may still commit."""
        return list(self._skipped)

    def unseen_within(self, lo: int, hi: int) -> list[tuple[int, int]]:
        """The parts of ``[lo, hi]`` that may hold rows this tracker has not seen: the holes the
        cursor stepped over, the holes above it, and everything above the newest row seen.
        Sorted and disjoint; rowids outside them are resolved or already scheduled."""
        candidates = [
            *self._skipped,
            *((max(h.lo, self.cursor + 1), h.hi) for h in self._holes if h.hi > self.cursor),
            (self._max_known + 1, MAX_ROWID),
        ]
        parts: list[tuple[int, int]] = []
        for part_lo, part_hi in sorted(candidates):
            cut_lo, cut_hi = max(lo, part_lo), min(hi, part_hi)
            if cut_lo > cut_hi:
                continue
            if parts and cut_lo <= parts[-1][1] + 1:
                parts[-1] = (parts[-1][0], max(parts[-1][1], cut_hi))
            else:
                parts.append((cut_lo, cut_hi))
        return parts

    def claim_new(self, rowids: Iterable[int], *, now: float) -> list[int]:
        """Mark visible rows as scheduled; return (sorted) the ones nobody has taken yet.

        Rows at or below the cursor are always returned: they committed after their hole was
        given up on, and must still be archived (idempotently) even though the cursor moved on.
        """
        visible = sorted(set(rowids))
        self._note_visible(visible, now)
        fresh = [
            r
            for r in visible
            if r <= self.cursor or (r not in self._claimed and r not in self._done)
        ]
        self._claimed.update(r for r in fresh if r > self.cursor)
        return fresh

    def settle(self, *, after: int, through: int, snapshot: Snapshot) -> None:
        """A full read: every row committed in ``(after, through]`` under ``snapshot`` was
        passed to :meth:`claim_new` (the sweep's rowid scan, in the same statement)."""
        if not self._settle_by_snapshot:
            return
        holes: list[_Hole] = []
        for hole in self._holes:
            if hole.seen_xmax is None and hole.lo <= through and hole.hi > after:
                if hole.hi > through:  # the part above the read is not covered: split it off
                    holes.append(_Hole(hole.lo, through, hole.since, snapshot.xmax))
                    holes.append(_Hole(through + 1, hole.hi, hole.since))
                    continue
                hole.seen_xmax = snapshot.xmax
            holes.append(hole)
        self._holes = holes
        if not (self._proofs and self._proofs[-1].through == after):
            self._proofs = []  # a new sweep; the next page of the same sweep keeps the earlier
        self._proofs.append(_Proof(after, through, snapshot.xmin))

    def blocking_gap(self) -> tuple[int, float] | None:
        """(rowid, first seen) of the hole the cursor waits behind, if it waits behind one."""
        nxt = self.cursor + 1
        if nxt in self._claimed or nxt in self._done or nxt > self._max_known:
            return None
        for hole in self._holes:
            if hole.lo <= nxt <= hole.hi:
                return (nxt, hole.since)
        return None

    def complete(self, rowids: Iterable[int]) -> None:
        """These rows are durable in the archive (or resolved as failures or filtered out)."""
        for rowid in rowids:
            self._claimed.discard(rowid)
            if rowid > self.cursor:
                self._done.add(rowid)

    def advance(self, *, now: float) -> int:
        """Move the cursor over resolved rows and expired holes; return it."""
        known: list[int] | None = None  # sorted claimed+done rowids, built once if needed
        while True:
            nxt = self.cursor + 1
            if nxt in self._done:
                self._done.remove(nxt)
                self.cursor = nxt
                continue
            if nxt in self._claimed or nxt > self._max_known:
                break
            if known is None:
                known = sorted(self._claimed | self._done)
            next_known = _first_above(known, nxt, default=self._max_known + 1)
            hole = self._hole_at(nxt, now, next_known)
            final_through = self._final_through(hole, nxt)
            if final_through is not None:
                self.settled += 1
                self.cursor = min(hole.hi, next_known - 1, final_through)
            elif now - hole.since >= self._gap_timeout_s:
                self.timed_out += 1
                self.cursor = min(hole.hi, next_known - 1)
            else:
                break
            self._skipped.append((nxt, self.cursor))
        self._drop_holes_below_cursor()
        return self.cursor

    def _final_through(self, hole: _Hole, rowid: int) -> int | None:
        """How far the hole at ``rowid`` is proven final by the last full read, if it is."""
        if hole.seen_xmax is None:
            return None
        for proof in self._proofs:
            if proof.after < rowid <= proof.through:
                return proof.through if proof.xmin >= hole.seen_xmax else None
        return None

    def _since(self, lo: int, hi: int, now: float) -> float:
        """When a hole was first seen: now, or earlier if a previous process saw it first."""
        if self._gap_since is not None and lo <= self._gap_since[0] <= hi:
            return min(now, self._gap_since[1])
        return now

    def _note_visible(self, visible: list[int], now: float) -> None:
        previous = self._max_known
        for rowid in visible:
            if rowid > previous + 1:
                self._holes.append(
                    _Hole(previous + 1, rowid - 1, self._since(previous + 1, rowid - 1, now))
                )
            previous = max(previous, rowid)
        self._max_known = previous

    def _hole_at(self, rowid: int, now: float, next_known: int) -> _Hole:
        # Holes are sorted and the cursor only moves up: the one we need is at the front once
        # the holes the cursor has passed are skipped.
        while self._holes and self._holes[0].hi < rowid:
            self._holes.pop(0)
        if self._holes and self._holes[0].lo <= rowid:
            return self._holes[0]
        # Not seen as a hole before (e.g. the range between cursor and the first visible row
        # after a restart): start its clock now.
        hole = _Hole(rowid, next_known - 1, self._since(rowid, next_known - 1, now))
        bisect.insort(self._holes, hole, key=lambda h: h.lo)
        return hole

    def _drop_holes_below_cursor(self) -> None:
        self._holes = [h for h in self._holes if h.hi > self.cursor]
        for hole in self._holes:
            hole.lo = max(hole.lo, self.cursor + 1)
