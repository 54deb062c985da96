"""Catch a stop from the first instant of ``archiver-db run``.

systemd may stop a unit that has only just started (a restart loop, an operator's quick
``systemctl stop``). Until the event loop installs its own handlers, SIGTERM's default action
would kill the process mid-start (exit by signal, not 0). This module is tiny and imports
nothing heavy, so the entry points install it before loading anything else; the service then
sees the request and stops cleanly.
"""

from __future__ import annotations

import signal
from types import FrameType

requested: list[int] = []


def _remember(signum: int, _frame: FrameType | None) -> None:
    requested.append(signum)


def catch_stop_signals() -> None:
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _remember)
