"""The export's progress bar (rich), on the terminal only: redirected output stays clean."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)


@contextlib.contextmanager
def bar() -> Iterator[Callable[[int, int], None]]:
    """A ``progress(done, total)`` callback drawing one bar of messages written."""
    with Progress(
        TextColumn("exporting"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        disable=not sys.stderr.isatty(),
        transient=False,
    ) as progress:
        task = progress.add_task("messages", total=None)

        def update(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total or None)

        yield update
