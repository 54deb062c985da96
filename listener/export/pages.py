"""Which page of an export holds a message. Pure.

A chat is cut by calendar time, never by position, so that a message arriving late (a history
sync, an old message archived later) changes only the page of its own month, and any message's
page follows from its timestamp: a reply links straight to its target's page. A month is one
page; a month with more than ``limit`` messages is cut into days, and a day over the limit into
hours (an hour is not cut further: no chat writes that fast for long).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo

PAGE_LIMIT = 5000
_SLUG_UNSAFE = re.compile(r"[^a-z0-9]+")


@dataclass(frozen=True, slots=True)
class Page:
    name: str  # the file's stem: 2024-03, 2024-03-14 or 2024-03-14T09
    start: datetime  # inclusive, in the export's time zone
    end: datetime  # exclusive
    count: int


def month_of(at: datetime, zone: tzinfo) -> datetime:
    local = at.astimezone(zone)
    return datetime(local.year, local.month, 1, tzinfo=zone)


def next_month(month: datetime) -> datetime:
    year, number = (month.year + 1, 1) if month.month == 12 else (month.year, month.month + 1)
    return month.replace(year=year, month=number)


def _day(at: datetime, zone: tzinfo) -> datetime:
    local = at.astimezone(zone)
    return datetime(local.year, local.month, local.day, tzinfo=zone)


def _hour(at: datetime, zone: tzinfo) -> datetime:
    local = at.astimezone(zone)
    return datetime(local.year, local.month, local.day, local.hour, tzinfo=zone)


@dataclass(frozen=True, slots=True)
class Plan:
    """The pages of one chat, from its message counts per month (and per day and hour where a
    month or a day is over the limit)."""

    zone: tzinfo
    pages: tuple[Page, ...]
    split_months: frozenset[datetime]
    split_days: frozenset[datetime]

    def page_of(self, at: datetime) -> str:
        """The name of the page that holds a message sent at ``at``."""
        month = month_of(at, self.zone)
        if month not in self.split_months:
            return f"{month:%Y-%m}"
        day = _day(at, self.zone)
        if day not in self.split_days:
            return f"{day:%Y-%m-%d}"
        return f"{_hour(at, self.zone):%Y-%m-%dT%H}"

    def neighbours(self) -> dict[str, tuple[str | None, str | None]]:
        names = [p.name for p in self.pages]
        return {
            name: (names[i - 1] if i else None, names[i + 1] if i + 1 < len(names) else None)
            for i, name in enumerate(names)
        }


def plan(
    *,
    zone: tzinfo,
    months: Mapping[datetime, int],
    days: Mapping[datetime, int],
    hours: Mapping[datetime, int],
    limit: int = PAGE_LIMIT,
) -> Plan:
    """``months`` (month start → count) for the whole chat; ``days`` for every month over the
    limit; ``hours`` for every day over the limit. Starts are local midnights/hours in ``zone``."""
    months = {m.astimezone(zone): n for m, n in months.items()}
    days = {d.astimezone(zone): n for d, n in days.items()}
    hours = {h.astimezone(zone): n for h, n in hours.items()}
    pages: list[Page] = []
    split_months = frozenset(m for m, n in months.items() if n > limit)
    split_days = frozenset(
        d for d, n in days.items() if n > limit and month_of(d, zone) in split_months
    )
    for month, count in sorted(months.items()):
        if month not in split_months:
            pages.append(Page(f"{month:%Y-%m}", month, next_month(month), count))
            continue
        for day, day_count in sorted(_within(days, month, next_month(month))):
            if day not in split_days:
                pages.append(Page(f"{day:%Y-%m-%d}", day, next_day(day, zone), day_count))
                continue
            for hour, hour_count in sorted(_within(hours, day, next_day(day, zone))):
                pages.append(
                    Page(f"{hour:%Y-%m-%dT%H}", hour, hour + timedelta(hours=1), hour_count)
                )
    return Plan(zone, tuple(pages), split_months, split_days)


def next_day(day: datetime, zone: tzinfo) -> datetime:
    # Local midnight to local midnight: a day is 23 or 25 hours when the clocks change.
    following = (day + timedelta(days=1, hours=2)).astimezone(zone)
    return datetime(following.year, following.month, following.day, tzinfo=zone)


def _within(
    counts: Mapping[datetime, int], start: datetime, end: datetime
) -> Iterable[tuple[datetime, int]]:
    return ((at, n) for at, n in counts.items() if start <= at < end and n > 0)


def slug(room_id: str, name: str | None) -> str:
    """A folder name for a chat: readable, and unique by the room ID's hash. Nothing a chat
    member chose reaches the file system unfiltered."""
    readable = _SLUG_UNSAFE.sub("-", (name or "chat").lower()).strip("-")[:40] or "chat"
    digest = hashlib.sha256(room_id.encode("utf-8", "surrogatepass")).hexdigest()[:10]
    return f"{readable}-{digest}"
