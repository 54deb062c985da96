"""Calendar pages: months, cut into days and hours only where a month or a day is too big."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from listener.export import pages

BERLIN = ZoneInfo("Europe/Berlin")


def test_small_months_are_one_page_each() -> None:
    plan = pages.plan(
        zone=UTC,
        months={datetime(2024, 1, 1, tzinfo=UTC): 3, datetime(2024, 3, 1, tzinfo=UTC): 7},
        days={},
        hours={},
    )
    assert [p.name for p in plan.pages] == ["2024-01", "2024-03"]
    assert plan.page_of(datetime(2024, 3, 31, 23, 59, tzinfo=UTC)) == "2024-03"
    assert plan.neighbours() == {"2024-01": (None, "2024-03"), "2024-03": ("2024-01", None)}


def test_a_big_month_is_cut_into_days_and_a_big_day_into_hours() -> None:
    month = datetime(2024, 2, 1, tzinfo=UTC)
    plan = pages.plan(
        zone=UTC,
        months={month: 30},
        days={datetime(2024, 2, 2, tzinfo=UTC): 8, datetime(2024, 2, 5, tzinfo=UTC): 22},
        hours={datetime(2024, 2, 5, 9, tzinfo=UTC): 12, datetime(2024, 2, 5, 17, tzinfo=UTC): 10},
        limit=10,
    )
    assert [p.name for p in plan.pages] == ["2024-02-02", "2024-02-05T09", "2024-02-05T17"]
    assert plan.page_of(datetime(2024, 2, 2, 13, tzinfo=UTC)) == "2024-02-02"
    assert plan.page_of(datetime(2024, 2, 5, 9, 30, tzinfo=UTC)) == "2024-02-05T09"
    assert sum(p.count for p in plan.pages) == 30


def test_pages_are_cut_in_the_export_time_zone_across_a_clock_change() -> None:
    # 31 March 2024: Berlin moves from +01:00 to +02:00; that day has 23 hours.
    day = datetime(2024, 3, 31, tzinfo=BERLIN)
    plan = pages.plan(
        zone=BERLIN,
        months={datetime(2024, 3, 1, tzinfo=BERLIN): 80},
        days={datetime(2024, 3, 30, tzinfo=BERLIN): 30, day: 50},
        hours={},
        limit=60,
    )
    page = plan.pages[-1]
    assert page.name == "2024-03-31"
    assert (page.end.astimezone(UTC) - page.start.astimezone(UTC)).total_seconds() == 23 * 3600
    assert plan.page_of(datetime(2024, 3, 30, 23, 30, tzinfo=UTC)) == "2024-03-31"


def test_counts_from_the_database_in_utc_land_on_local_pages() -> None:
    local_month = datetime(2024, 1, 1, tzinfo=BERLIN)
    plan = pages.plan(zone=BERLIN, months={local_month.astimezone(UTC): 4}, days={}, hours={})
    assert [p.name for p in plan.pages] == ["2024-01"]


@pytest.mark.parametrize(
    ("name", "expected_prefix"),
    [("Family 👪", "family-"), ("../../etc/passwd", "etc-passwd-"), (None, "chat-"),
     ("", "chat-"), ("a" * 100, "a" * 40 + "-"), ("CON", "con-")],
)  # fmt: skip
def test_chat_folders_are_safe_names(name: str | None, expected_prefix: str) -> None:
    slug = pages.slug("!room:example.org", name)
    assert slug.startswith(expected_prefix)
    assert "/" not in slug
    assert ".." not in slug
    assert slug != pages.slug("!other:example.org", name)
