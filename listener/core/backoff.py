"""Capped exponential backoff with jitter. Pure: the caller passes the random source."""

from __future__ import annotations

import math
import random


def delay_s(attempt: int, *, base_s: float, cap_s: float, rng: random.Random) -> float:
    """Delay before retry number ``attempt`` (0-based): between half and all of the cap curve.

    Keeping half of the delay fixed avoids the near-zero retries of full jitter, which would
    hammer a database that is just coming back.
    """
    ceiling = min(cap_s, base_s * (2.0 ** min(attempt, 32)))
    return ceiling / 2.0 + rng.random() * ceiling / 2.0


def retry_after_s(header: str | None, *, cap_s: float) -> float | None:
    """Seconds from an HTTP ``Retry-After`` header given in seconds; None if absent or a date."""
    if header is None:
        return None
    try:
        value = float(header.strip())
    except ValueError:
        return None
    if math.isnan(value):
        return None
    return max(0.0, min(value, cap_s))
