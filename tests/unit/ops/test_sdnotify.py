"""sd_notify over a real datagram socket: no-op outside systemd, paths and abstract names."""

from __future__ import annotations

import socket
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from listener.ops import sdnotify


@pytest.mark.parametrize(
    ("notify_socket", "address"),
    [
        (None, None),
        ("", None),
        ("@/org/freedesktop/systemd1/notify", "\0/org/freedesktop/systemd1/notify"),
        ("/run/systemd/notify", "/run/systemd/notify"),
        ("vsock:2:1234", None),
        ("relative/path", None),
    ],
)
def test_socket_address__paths_and_abstract_names(
    notify_socket: str | None, address: str | None
) -> None:
    assert sdnotify.socket_address(notify_socket) == address


@pytest.mark.parametrize(
    ("usec", "watchdog_pid", "expected_s"),
    [
        (None, None, None),
        (0, None, None),
        (30_000_000, None, 15.0),
        (30_000_000, 4242, 15.0),  # WATCHDOG_PID is us
        (30_000_000, 1, None),  # meant for another process
    ],
)
def test_watchdog_interval__half_the_timeout_and_only_for_our_pid(
    usec: int | None, watchdog_pid: int | None, expected_s: float | None
) -> None:
    assert sdnotify.watchdog_interval_s(usec, watchdog_pid, pid=4242) == expected_s


def test_notifier__is_a_no_op_outside_systemd() -> None:
    notifier = sdnotify.Notifier(None, watchdog_usec=1_000_000)
    assert not notifier.enabled
    assert notifier.watchdog_interval_s is None
    assert notifier.ready() is False
    assert notifier.watchdog() is False


def _drain(sock: socket.socket) -> list[str]:
    messages = []
    while True:
        try:
            messages.append(sock.recv(4096).decode())
        except BlockingIOError:
            return messages


@pytest.fixture
def path_socket() -> Iterator[tuple[str, socket.socket]]:
    # AF_UNIX paths are limited to ~107 bytes: keep it short rather than under tmp_path.
    with tempfile.TemporaryDirectory(prefix="sdn", dir="/tmp") as directory:
        path = str(Path(directory) / "notify")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(path)
        sock.setblocking(False)
        try:
            yield path, sock
        finally:
            sock.close()


def test_notifier__sends_ready_watchdog_stopping_in_order(
    path_socket: tuple[str, socket.socket],
) -> None:
    path, sock = path_socket
    notifier = sdnotify.Notifier(path, watchdog_usec=2_000_000)
    assert notifier.ready("archiving")
    assert notifier.watchdog()
    assert notifier.status("lag 3 rows\nqueue 0")
    assert notifier.stopping("draining")
    assert _drain(sock) == [
        "READY=1\nSTATUS=archiving",
        "WATCHDOG=1",
        "STATUS=lag 3 rows queue 0",
        "STOPPING=1\nSTATUS=draining",
    ]
    assert notifier.watchdog_interval_s == 1.0


def test_notifier__abstract_namespace_socket() -> None:
    name = f"sdnotify-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.setblocking(False)
        assert sdnotify.Notifier("@" + name).ready()
        assert _drain(sock) == ["READY=1"]


def test_notifier__a_missing_socket_is_reported_once_never_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    notifier = sdnotify.Notifier("/nonexistent/dir/notify")
    assert notifier.enabled
    assert notifier.ready() is False
    assert notifier.watchdog() is False
    warnings = [r for r in caplog.records if getattr(r, "action", "") == "sd_notify_failed"]
    assert len(warnings) == 1
