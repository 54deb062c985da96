"""A stop signal during start-up is remembered, not fatal."""

from __future__ import annotations

import os
import signal

from listener import startup


def test_a_stop_signal_before_the_loop_runs_is_remembered() -> None:
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    startup.requested.clear()
    try:
        startup.catch_stop_signals()
        os.kill(os.getpid(), signal.SIGTERM)  # would end this process with the default action
        os.kill(os.getpid(), signal.SIGINT)  # would raise KeyboardInterrupt
        assert startup.requested == [signal.SIGTERM, signal.SIGINT]
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
        startup.requested.clear()
