"""The chaos soak, short: one minute of every kind of fault at random (fixed seed) against the
real archiver process, then ``verify`` and the soak's own reconciliation (``bench/soak.py``).

What it asserts does not depend on timing: every kind of fault was injected, and nothing was
lost, doubled or altered, with no unexpected exit. Latencies and recovery times are reported by
``python -m bench.soak`` (docs/BENCHMARKS.md), not asserted here.
"""

from __future__ import annotations

import pytest

from bench import soak

pytestmark = pytest.mark.slow


async def test_soak__one_minute_of_every_fault_loses_nothing() -> None:
    args = soak.normalise(
        soak.parser().parse_args(["--minutes", "1", "--seed", "20261207", "--rate", "40"])
    )
    result = await soak.run(args)
    assert set(result["faults"]) == set(soak.FAULTS), result["faults"]
    assert soak.failures(result) == [], soak.human(result)
    checks = result["checks"]
    assert checks["lost"] == checks["doubled"] == 0
    assert checks["edits_made"] > 0
    assert checks["reactions_made"] > 0
    assert checks["revoked"] > 0
    assert checks["media_rows"] > 0
    assert result["cursor_end"]["saved"] == result["cursor_end"]["newest_rowid"]
