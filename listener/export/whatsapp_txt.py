"""Messages as WhatsApp's own "Export chat" writes them (the iPhone's ``_chat.txt``), so that
tools that read WhatsApp exports read ours. Pure.

    [01/03/2024, 12:00:05] Mia B.: text, continuation lines as they are
    ‎[01/03/2024, 12:00:09] Mia B.: ‎<attached: 00000042-PHOTO-2024-03-01-12-00-09.jpg>
    ‎[01/03/2024, 12:01:00] Paul: ‎image omitted

WhatsApp marks such lines with U+200E (left-to-right mark) and writes media next to the text
file under those names. Where the archive knows more than WhatsApp's export can say, it says it
in WhatsApp's own marker style: ``‎<This message was edited>`` (as WhatsApp does), and
``‎<This message was deleted>`` after the text a deleted message had (WhatsApp would drop it).
"""

from __future__ import annotations

import re
from datetime import datetime, tzinfo

LRM = "\u200e"
# What WhatsApp calls each kind, in file names and in "… omitted" lines.
FILE_KIND = {"image": "PHOTO", "video": "VIDEO", "audio": "AUDIO", "sticker": "STICKER"}
OMITTED = {
    "image": "image omitted",
    "video": "video omitted",
    "audio": "audio omitted",
    "sticker": "sticker omitted",
    "file": "document omitted",
}
_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9._ ()+-]+")
_EXTENSIONS = {
    "image/jpeg": ".jpg", "image/png": ".png", "image/gif": ".gif", "image/webp": ".webp",
    "video/mp4": ".mp4", "video/quicktime": ".mov", "video/webm": ".webm",
    "audio/ogg": ".opus", "audio/mpeg": ".mp3", "audio/mp4": ".m4a", "audio/aac": ".aac",
    "application/pdf": ".pdf",
}  # fmt: skip


def extension(mimetype: str | None, filename: str | None) -> str:
    """A safe file extension: from the MIME type we know, else the name's own if it is plain."""
    known = _EXTENSIONS.get((mimetype or "").split(";", 1)[0].strip().lower())
    if known:
        return known
    suffix = (filename or "").rpartition(".")[2] if "." in (filename or "") else ""
    return "." + suffix.lower() if re.fullmatch(r"[A-Za-z0-9]{1,8}", suffix) else ".bin"


def attachment_name(
    media_id: int, kind: str, at: datetime, zone: tzinfo, filename: str | None, mimetype: str | None
) -> str:
    """WhatsApp's attachment name: serial, kind, time (documents keep their own name). The
    serial is the archive's media ID, so a name never changes between exports."""
    serial = f"{media_id:08d}"
    label = FILE_KIND.get(kind)
    suffix = extension(mimetype, filename)
    if label is not None:
        return f"{serial}-{label}-{at.astimezone(zone):%Y-%m-%d-%H-%M-%S}{suffix}"
    base = re.split(r"[/\\]", filename or "document")[-1]
    stem = _NAME_UNSAFE.sub("_", base.rsplit(".", 1)[0] if "." in base.strip(".") else base)
    return f"{serial}-{stem.strip('._ ')[:60] or 'document'}{suffix}"


def stamp(at: datetime, zone: tzinfo) -> str:
    return f"[{at.astimezone(zone):%d/%m/%Y, %H:%M:%S}]"


def _one_line(name: str) -> str:
    # A sender name is one line with no ": " in it, or the next reader mistakes where it ends.
    return " ".join(name.split()).replace(": ", " ") or "unknown"


def lines(
    *,
    at: datetime,
    zone: tzinfo,
    sender: str,
    text: str,
    attachments: list[str],
    omitted: list[str],
    edited: bool,
    deleted: bool,
) -> str:
    """One message as WhatsApp writes it (one or more lines, ending with a newline)."""
    head = f"{stamp(at, zone)} {_one_line(sender)}: "
    out: list[str] = []
    for name in attachments:
        out.append(f"{LRM}{head}{LRM}<attached: {name}>")
    for kind in omitted:
        out.append(f"{LRM}{head}{LRM}{OMITTED.get(kind, 'document omitted')}")
    body = text.replace("\r\n", "\n").replace("\r", "\n")
    markers = (f" {LRM}<This message was edited>" if edited else "") + (
        f" {LRM}<This message was deleted>" if deleted else ""
    )
    if body or not out:  # a caption follows its attachment, as a message of its own
        out.append(f"{head}{body}{markers}")
    elif markers:
        out[-1] += markers
    return "\n".join(out) + "\n"
