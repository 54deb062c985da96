"""Named runtime queries, kept in ``listener/db/sql/*.sql`` so logs and metrics can name them."""

from __future__ import annotations

from functools import cache
from pathlib import Path

_DIR = Path(__file__).with_name("sql")


@cache
def load(name: str) -> str:
    """The text of query ``name`` (file ``sql/<name>.sql``)."""
    path = _DIR / f"{name}.sql"
    if not path.is_file():
        raise KeyError(f"no query named {name!r}")
    return path.read_text(encoding="utf-8")
