"""listener.core.roomfilter: which rooms are archived (settings + the monitored_rooms table)."""

from __future__ import annotations

import pytest

from listener.core import models, roomfilter

ARCHIVE = roomfilter.Decision.ARCHIVE
SKIP = roomfilter.Decision.SKIP
REGISTER = roomfilter.Decision.REGISTER

ROOM_A = "!a:example.org"
ROOM_B = "!b:example.org"
CHAT_A = "120363000000000001@g.us"
CHAT_B = "4915112345678@s.whatsapp.net"


def _filter(
    configured: tuple[str, ...] = (),
    rows: tuple[models.MonitoredRoom, ...] = (),
    *,
    auto_register: bool = False,
) -> roomfilter.RoomFilter:
    return roomfilter.RoomFilter.build(
        configured=configured, rows=rows, auto_register=auto_register
    )


ENABLED_A = models.MonitoredRoom(ROOM_A, enabled=True, whatsapp_id=CHAT_A)
DISABLED_A = models.MonitoredRoom(ROOM_A, enabled=False, whatsapp_id=CHAT_A)
ENABLED_B_NO_WA = models.MonitoredRoom(ROOM_B, enabled=True)


@pytest.mark.parametrize(
    ("configured", "rows", "auto_register", "room_id", "chat_id", "expected"),
    [
        pytest.param((), (), False, ROOM_A, CHAT_A, ARCHIVE, id="no-config-archives-all"),
        pytest.param((), (), False, None, CHAT_A, ARCHIVE, id="no-config-no-portal"),
        # MONITORED_ROOMS by Matrix room ID or WhatsApp chat ID
        pytest.param((ROOM_A,), (), False, ROOM_A, CHAT_A, ARCHIVE, id="setting-room-id"),
        pytest.param((CHAT_A,), (), False, ROOM_A, CHAT_A, ARCHIVE, id="setting-chat-id"),
        pytest.param((CHAT_A,), (), False, None, CHAT_A, ARCHIVE, id="setting-chat-no-portal"),
        pytest.param((ROOM_A,), (), False, None, CHAT_A, SKIP, id="setting-room-no-portal"),
        pytest.param((ROOM_A,), (), False, ROOM_B, CHAT_B, SKIP, id="setting-other-room"),
        pytest.param((CHAT_A,), (), False, ROOM_B, CHAT_B, SKIP, id="setting-other-chat"),
        # enabled table rows
        pytest.param((), (ENABLED_A,), False, ROOM_A, CHAT_A, ARCHIVE, id="row-room-id"),
        pytest.param((), (ENABLED_A,), False, None, CHAT_A, ARCHIVE, id="row-whatsapp-id"),
        pytest.param((), (ENABLED_A,), False, ROOM_B, CHAT_B, SKIP, id="row-other-room"),
        pytest.param(
            (), (ENABLED_B_NO_WA,), False, ROOM_B, CHAT_B, ARCHIVE, id="row-without-wa-id"
        ),
        pytest.param((CHAT_B,), (ENABLED_A,), False, ROOM_B, CHAT_B, ARCHIVE, id="union"),
        pytest.param((CHAT_B,), (ENABLED_A,), False, ROOM_A, CHAT_A, ARCHIVE, id="union-row"),
        # disabled rows
        pytest.param((), (DISABLED_A,), False, ROOM_A, CHAT_A, SKIP, id="disabled-row"),
        pytest.param((), (DISABLED_A,), False, None, CHAT_A, SKIP, id="disabled-by-wa-id"),
        pytest.param(
            (), (DISABLED_A,), False, ROOM_B, CHAT_B, ARCHIVE, id="disabled-only-others-all"
        ),
        pytest.param(
            (ROOM_A,), (DISABLED_A,), False, ROOM_A, CHAT_A, ARCHIVE, id="setting-beats-disabled"
        ),
        pytest.param(
            (CHAT_A,), (DISABLED_A,), False, ROOM_A, CHAT_A, ARCHIVE, id="setting-chat-beats"
        ),
        pytest.param(
            (ROOM_B,), (DISABLED_A,), False, ROOM_A, CHAT_A, SKIP, id="setting-names-other"
        ),
        # auto-registration
        pytest.param((), (), True, ROOM_A, CHAT_A, REGISTER, id="auto-no-config"),
        pytest.param((), (ENABLED_A,), True, ROOM_B, CHAT_B, REGISTER, id="auto-unknown"),
        pytest.param((), (ENABLED_A,), True, ROOM_A, CHAT_A, ARCHIVE, id="auto-known-row"),
        pytest.param((ROOM_B,), (), True, ROOM_B, CHAT_B, ARCHIVE, id="auto-known-setting"),
        pytest.param((), (DISABLED_A,), True, ROOM_A, CHAT_A, SKIP, id="auto-disabled-stays"),
    ],
)
def test_room_filter__decision_table(
    configured: tuple[str, ...],
    rows: tuple[models.MonitoredRoom, ...],
    auto_register: bool,
    room_id: str | None,
    chat_id: str,
    expected: roomfilter.Decision,
) -> None:
    decision = _filter(configured, rows, auto_register=auto_register).decide(room_id, chat_id)

    assert decision is expected


def test_room_filter__build_collects_both_names_of_each_row() -> None:
    media_off = models.MonitoredRoom(ROOM_B, enabled=False, archive_media=False, whatsapp_id=CHAT_B)

    built = _filter((ROOM_A,), (ENABLED_A, media_off), auto_register=True)

    assert built == roomfilter.RoomFilter(
        configured=frozenset({ROOM_A}),
        enabled=frozenset({ROOM_A, CHAT_A}),
        disabled=frozenset({ROOM_B, CHAT_B}),
        media_off=frozenset({ROOM_B, CHAT_B}),
        auto_register=True,
    )


NO_MEDIA_A = models.MonitoredRoom(ROOM_A, archive_media=False, whatsapp_id=CHAT_A)


@pytest.mark.parametrize(
    ("rows", "room_id", "chat_id", "expected"),
    [
        pytest.param((), ROOM_A, CHAT_A, True, id="default-on"),
        pytest.param((ENABLED_A,), ROOM_A, CHAT_A, True, id="row-media-on"),
        pytest.param((NO_MEDIA_A,), ROOM_A, CHAT_A, False, id="row-media-off"),
        pytest.param((NO_MEDIA_A,), None, CHAT_A, False, id="media-off-by-wa-id"),
        pytest.param((NO_MEDIA_A,), ROOM_A, "other@g.us", False, id="media-off-by-room-id"),
        pytest.param((NO_MEDIA_A,), ROOM_B, CHAT_B, True, id="other-room-media-on"),
    ],
)
def test_room_filter__archive_media_flag(
    rows: tuple[models.MonitoredRoom, ...], room_id: str | None, chat_id: str, expected: bool
) -> None:
    assert _filter((), rows).archive_media(room_id, chat_id) is expected
