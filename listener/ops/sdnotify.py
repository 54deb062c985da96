"""systemd's notification protocol (``sd_notify``) over the plain ``NOTIFY_SOCKET`` datagram.

No libsystemd: a message is newline-separated ``KEY=VALUE`` lines in one ``AF_UNIX``
``SOCK_DGRAM`` datagram sent to the address systemd puts in ``NOTIFY_SOCKET`` (a path, or an
abstract-namespace name written with a leading ``@``). Outside systemd there is no socket and
every call is a no-op. Sending never raises: a lost notification must not stop the archiver.
The watchdog is armed only when ``WATCHDOG_USEC`` is set and ``WATCHDOG_PID`` (if set) is us.
"""

from __future__ import annotations

import logging
import os
import socket

logger = logging.getLogger(__name__)


def socket_address(notify_socket: str | None) -> str | None:
    """The ``sendto`` address for ``NOTIFY_SOCKET``, or None when it is unusable or unset."""
    if not notify_socket:
        return None
    if notify_socket.startswith("@"):
        return "\0" + notify_socket[1:]
    if notify_socket.startswith("/"):
        return notify_socket
    return None  # vsock: and other transports are not supported


def watchdog_interval_s(
    watchdog_usec: int | None, watchdog_pid: int | None, *, pid: int
) -> float | None:
    """How often to ping: half the watchdog timeout, as sd_watchdog_enabled(3) advises."""
    if not watchdog_usec or (watchdog_pid is not None and watchdog_pid != pid):
        return None
    return watchdog_usec / 2_000_000


class Notifier:
    """Sends ``sd_notify`` messages; every method is a cheap no-op outside systemd."""

    def __init__(
        self,
        notify_socket: str | None,
        *,
        watchdog_usec: int | None = None,
        watchdog_pid: int | None = None,
        pid: int | None = None,
    ) -> None:
        self._address = socket_address(notify_socket)
        if notify_socket and self._address is None:
            logger.warning(
                "NOTIFY_SOCKET %r is not a path or an abstract socket; not notifying systemd",
                notify_socket,
                extra={"action": "sd_notify_unsupported"},
            )
        interval = watchdog_interval_s(watchdog_usec, watchdog_pid, pid=pid or os.getpid())
        self.watchdog_interval_s = interval if self._address else None
        self._warned = False

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def notify(self, *lines: str, wait_s: float = 0.0) -> bool:
        """Send one message made of ``lines``; True when the datagram went out.

        ``wait_s`` > 0 waits that long for room in the receiver's queue (a full queue drops
        a non-blocking datagram): READY and STOPPING must not be lost, a WATCHDOG ping may.
        """
        if self._address is None:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                if wait_s > 0:
                    sock.settimeout(wait_s)
                else:
                    sock.setblocking(False)
                sock.sendto("\n".join(lines).encode(), self._address)
        except OSError as exc:
            if not self._warned:
                self._warned = True
                logger.warning(
                    "cannot notify systemd: %s", exc, extra={"action": "sd_notify_failed"}
                )
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        return self.notify("READY=1", *_status(status), wait_s=1.0)

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def stopping(self, status: str | None = None) -> bool:
        return self.notify("STOPPING=1", *_status(status), wait_s=1.0)

    def status(self, text: str) -> bool:
        return self.notify(*_status(text))


def _status(text: str | None) -> list[str]:
    # One line per message field: a newline would start a new KEY=VALUE pair.
    return [f"STATUS={' '.join(text.split())}"] if text else []
