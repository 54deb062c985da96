"""Run a benchmark against a frozen copy of the tree (``listener/``, ``sql/``, ``bench/``).

The working tree is shared and edited while benchmarks run; a backfill benchmark starts the
CLI some twenty times, and a file changing between two starts would mix two versions in one
result (or fail to import mid-run). This copies the three directories to a temporary
directory, checks that the copy imports, runs ``python -m bench.<name> [args]`` there with the
same interpreter, copies the JSON results back to ``bench/results/`` and removes the copy.

    .venv/bin/python -m bench.snapshot backfill            # = bench.backfill on a frozen copy
    .venv/bin/python -m bench.snapshot latency --quick
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "results")


def main() -> int:
    if len(sys.argv) < 2:
        print(__doc__)
        return 2
    name, args = sys.argv[1], sys.argv[2:]
    with tempfile.TemporaryDirectory(prefix="archiver-bench-snap-") as tmp:
        snap = Path(tmp)
        for part in ("listener", "sql"):
            shutil.copytree(REPO / part, snap / part, ignore=IGNORE)
        # bench/: the scripts only (other benchmarks may keep scratch directories there).
        (snap / "bench").mkdir()
        for script in (REPO / "bench").glob("*.py"):
            shutil.copy2(script, snap / "bench" / script.name)
        shutil.copy2(REPO / "pyproject.toml", snap / "pyproject.toml")
        check = subprocess.run(
            [sys.executable, "-c", "import listener.cli, listener.service"], cwd=snap
        )
        if check.returncode != 0:
            print("the working tree does not import right now; try again in a moment")
            return 1
        code = subprocess.run(
            [sys.executable, "-m", f"bench.{name}", *args],
            cwd=snap,
            env={**__import__("os").environ, "BENCH_SOURCE_TREE": str(REPO)},
        ).returncode
        results = snap / "bench" / "results"
        if results.is_dir():
            dest = REPO / "bench" / "results"
            dest.mkdir(parents=True, exist_ok=True)
            for path in results.glob("*.json"):
                shutil.copy2(path, dest / path.name)
    return code


if __name__ == "__main__":
    sys.exit(main())
