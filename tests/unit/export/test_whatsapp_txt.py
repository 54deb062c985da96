"""WhatsApp's own export lines."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from listener.export import whatsapp_txt as wa

AT = datetime(2024, 3, 1, 12, 0, 5, tzinfo=UTC)
LRM = "\u200e"


def line(**over: object) -> str:
    values: dict[str, object] = {
        "at": AT, "zone": UTC, "sender": "Mia B.", "text": "hello", "attachments": [],
        "omitted": [], "edited": False, "deleted": False,
    }  # fmt: skip
    values.update(over)
    return wa.lines(**values)  # type: ignore[arg-type]


def test_a_text() -> None:
    assert line() == "[01/03/2024, 12:00:05] Mia B.: hello\n"


def test_continuation_lines_and_markers() -> None:
    assert line(text="a\r\nb", edited=True, deleted=True) == (
        f"[01/03/2024, 12:00:05] Mia B.: a\nb {LRM}<This message was edited> "
        f"{LRM}<This message was deleted>\n"
    )


def test_attachments_omissions_and_captions() -> None:
    assert line(text="", attachments=["00000001-PHOTO-x.jpg"]) == (
        f"{LRM}[01/03/2024, 12:00:05] Mia B.: {LRM}<attached: 00000001-PHOTO-x.jpg>\n"
    )
    assert line(text="nice", omitted=["video"]) == (
        f"{LRM}[01/03/2024, 12:00:05] Mia B.: {LRM}video omitted\n"
        "[01/03/2024, 12:00:05] Mia B.: nice\n"
    )


def test_a_sender_name_cannot_forge_a_line() -> None:
    out = line(sender="Eve: [01/01/2020, 00:00:00] Bob\nx")
    assert out.count("\n") == 1
    assert out.startswith("[01/03/2024, 12:00:05] Eve [01/01/2020, 00:00:00] Bob x: hello")


@pytest.mark.parametrize(
    ("kind", "filename", "mimetype", "expected"),
    [
        ("image", "IMG.jpg", "image/jpeg", "00000042-PHOTO-2024-03-01-12-00-05.jpg"),
        ("audio", "voice.ogg", "audio/ogg", "00000042-AUDIO-2024-03-01-12-00-05.opus"),
        ("sticker", "s.webp", "image/webp", "00000042-STICKER-2024-03-01-12-00-05.webp"),
        ("file", "invoice 2024.pdf", "application/pdf", "00000042-invoice 2024.pdf"),
        ("file", "../../etc/passwd", None, "00000042-passwd.bin"),
        ("file", "x.svg", "image/svg+xml", "00000042-x.svg"),
        ("file", "a.b.c.exe;rm", None, "00000042-a.b.c.bin"),
        ("file", None, None, "00000042-document.bin"),
    ],
)
def test_attachment_names(
    kind: str, filename: str | None, mimetype: str | None, expected: str
) -> None:
    name = wa.attachment_name(42, kind, AT, UTC, filename, mimetype)
    assert name == expected
    assert "/" not in name
