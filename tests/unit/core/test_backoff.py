"""listener.core.backoff: capped exponential backoff keeping half of each delay fixed."""

from __future__ import annotations

import math
import random

import pytest

from listener.core import backoff


class _FixedRandom(random.Random):
    """A random source whose ``random()`` always returns ``value``."""

    def __init__(self, value: float) -> None:
        super().__init__(0)
        self._value = value

    def random(self) -> float:
        return self._value


@pytest.mark.parametrize(
    ("attempt", "ceiling_s"),
    [(0, 1.0), (1, 2.0), (2, 4.0), (3, 8.0), (4, 16.0), (5, 30.0), (6, 30.0), (10_000, 30.0)],
)
@pytest.mark.parametrize(("draw", "fraction"), [(0.0, 0.5), (0.5, 0.75), (0.999, 0.9995)])
def test_delay_s__between_half_and_all_of_the_capped_curve(
    attempt: int, ceiling_s: float, draw: float, fraction: float
) -> None:
    delay = backoff.delay_s(attempt, base_s=1.0, cap_s=30.0, rng=_FixedRandom(draw))

    assert delay == pytest.approx(ceiling_s * fraction)


@pytest.mark.parametrize(
    ("base_s", "cap_s", "attempt", "expected_min_s"),
    [
        (0.1, 5.0, 0, 0.05),
        (0.1, 5.0, 3, 0.4),
        (0.1, 5.0, 6, 2.5),
        (2.0, 1.0, 0, 0.5),  # cap below base: the cap wins from the first retry
    ],
)
def test_delay_s__scales_with_base_and_cap(
    base_s: float, cap_s: float, attempt: int, expected_min_s: float
) -> None:
    delay = backoff.delay_s(attempt, base_s=base_s, cap_s=cap_s, rng=_FixedRandom(0.0))

    assert delay == pytest.approx(expected_min_s)


def test_delay_s__seeded_delays_stay_within_bounds_and_repeat() -> None:
    def run(seed: int) -> list[float]:
        rng = random.Random(seed)
        return [backoff.delay_s(a, base_s=0.5, cap_s=10.0, rng=rng) for a in range(200)]

    delays = run(1234)

    assert delays == run(1234)
    for attempt, delay in enumerate(delays):
        ceiling = min(10.0, 0.5 * 2.0**attempt)
        assert ceiling / 2 <= delay <= ceiling
    assert len(set(delays[10:])) > 150  # jittered, not constant at the cap


def test_delay_s__huge_attempt_does_not_overflow() -> None:
    delay = backoff.delay_s(10**9, base_s=1.0, cap_s=30.0, rng=_FixedRandom(1.0))

    assert delay == 30.0
    assert math.isfinite(delay)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("5", 5.0),
        (" 7 ", 7.0),
        ("0", 0.0),
        ("2.5", 2.5),
        ("120", 30.0),
        ("-3", 0.0),
        ("inf", 30.0),
        ("", None),
        ("soon", None),
        ("Wed, 21 Oct 2015 07:28:00 GMT", None),
    ],
)
def test_retry_after_s__seconds_capped_dates_ignored(
    header: str | None, expected: float | None
) -> None:
    assert backoff.retry_after_s(header, cap_s=30.0) == expected
