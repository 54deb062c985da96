"""Media references in event content, mxc parsing and Synapse's media_store path rules. Pure.

Detection (:func:`find_media`) is a function over one content dict, so edits can run it on
``m.new_content`` too. Everything that becomes a file-system path is validated here, strictly:
a server name or media ID that could escape the media store raises
:class:`~listener.core.errors.MediaRejected` and is never opened.
"""

from __future__ import annotations

import dataclasses
import math
import posixpath
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from listener.core import errors, textsafe
from listener.media import encrypted_file

Kind = Literal["image", "video", "audio", "file", "sticker", "thumbnail"]
KINDS: tuple[Kind, ...] = ("image", "video", "audio", "file", "sticker", "thumbnail")
MSGTYPE_KINDS: dict[str, Kind] = {
    "m.image": "image",
    "m.video": "video",
    "m.audio": "audio",  # voice notes are m.audio with org.matrix.msc3245.voice
    "m.file": "file",
}
ROOM_MESSAGE = "m.room.message"
STICKER = "m.sticker"
MAX_INT32 = 2**31 - 1
MAX_INT64 = 2**63 - 1
MAX_MXC_LEN = 1024

# Matrix server name grammar: a DNS name, IPv4 or [IPv6] literal, optional :port; ASCII only.
_HOST = re.compile(
    r"(?:\[[0-9A-Fa-f:.]{2,45}\]|[A-Za-z0-9](?:[A-Za-z0-9.-]{0,253}[A-Za-z0-9])?)(?::[0-9]{1,5})?"
)
# The spec's media ID alphabet (Synapse: 24 letters; mautrix direct media: base64url).
_MEDIA_ID = re.compile(r"[A-Za-z0-9_-]{1,255}")
# Synapse's own rule for a path component (synapse/media/filepath.py).
_COMPONENT = re.compile(r"[A-Za-z0-9_\-.\[\]:]+")


@dataclass(frozen=True, slots=True)
class MediaInfo:
    """What the event says about the media (``info``); every field is optional."""

    mimetype: str | None = None
    size: int | None = None
    width: int | None = None
    height: int | None = None
    duration_ms: int | None = None


@dataclass(frozen=True, slots=True)
class MediaRef:
    """One piece of media an event points at.

    ``mxc`` is the plain ``url`` or the EncryptedFile's ``url`` (as found: not validated yet,
    see :func:`parse_mxc`). ``invalid`` carries the reason when the event's EncryptedFile is
    malformed: the reference is recorded, never fetched.
    """

    mxc: str
    kind: Kind
    filename: str | None = None
    info: MediaInfo = MediaInfo()
    encrypted: encrypted_file.EncryptedFileInfo | None = None
    is_thumbnail: bool = False
    voice: bool = False
    invalid: str | None = None


def find_media(event_type: str, content: Mapping[str, Any]) -> list[MediaRef]:
    """Every media reference in ``content`` (and its ``m.new_content``), first one per mxc."""
    seen: dict[str, MediaRef] = {}
    for ref in _refs(event_type, content, depth=0):
        seen.setdefault(ref.mxc, ref)
    return list(seen.values())


def _refs(event_type: str, content: Mapping[str, Any], depth: int) -> Iterator[MediaRef]:
    kind = _main_kind(event_type, content)
    info = content.get("info")
    info = info if isinstance(info, Mapping) else {}
    if kind is not None:
        main = _ref(
            content.get("url"),
            content.get("file"),
            kind=kind,
            filename=_filename(content),
            info=_info(info, content),
            voice=isinstance(content.get("org.matrix.msc3245.voice"), Mapping),
        )
        if main is not None:
            yield main
    thumb_info = info.get("thumbnail_info")
    thumb = _ref(
        info.get("thumbnail_url"),
        info.get("thumbnail_file"),
        kind="thumbnail",
        filename=None,
        info=_info(thumb_info if isinstance(thumb_info, Mapping) else {}, {}),
        is_thumbnail=True,
    )
    if thumb is not None:
        yield thumb
    new_content = content.get("m.new_content")
    if depth == 0 and isinstance(new_content, Mapping):
        yield from _refs(event_type, new_content, depth=1)


def _main_kind(event_type: str, content: Mapping[str, Any]) -> Kind | None:
    if event_type == STICKER:
        return "sticker"
    if event_type == ROOM_MESSAGE:
        msgtype = content.get("msgtype")
        return MSGTYPE_KINDS.get(msgtype) if isinstance(msgtype, str) else None
    return None


def _ref(
    url: object,
    file: object,
    *,
    kind: Kind,
    filename: str | None,
    info: MediaInfo,
    voice: bool = False,
    is_thumbnail: bool = False,
) -> MediaRef | None:
    """The EncryptedFile wins over a plain url (the spec says it replaces it)."""
    base = MediaRef(
        mxc="", kind=kind, filename=filename, info=info, is_thumbnail=is_thumbnail, voice=voice
    )
    if file is not None:
        raw_url = file.get("url") if isinstance(file, Mapping) else None
        mxc = raw_url if isinstance(raw_url, str) else ""
        try:
            encrypted = encrypted_file.parse_encrypted_file(file)
        except errors.EncryptedFileInvalid as exc:
            return dataclasses.replace(base, mxc=mxc, invalid=str(exc))
        return dataclasses.replace(base, mxc=mxc, encrypted=encrypted)
    if isinstance(url, str) and url:
        return dataclasses.replace(base, mxc=url)
    return None


def _filename(content: Mapping[str, Any]) -> str | None:
    """MSC2530: ``filename`` when present, else ``body`` is the file name."""
    for key in ("filename", "body"):
        value = content.get(key)
        if isinstance(value, str) and value.strip():
            return textsafe.safe_text(value)[:1024]
    return None


def _info(info: Mapping[str, Any], content: Mapping[str, Any]) -> MediaInfo:
    duration = _int(info.get("duration"), MAX_INT64)
    audio = content.get("org.matrix.msc1767.audio")
    if duration is None and isinstance(audio, Mapping):
        duration = _int(audio.get("duration"), MAX_INT64)
    mimetype = info.get("mimetype")
    return MediaInfo(
        mimetype=textsafe.safe_text(mimetype)[:255] if isinstance(mimetype, str) else None,
        size=_int(info.get("size"), MAX_INT64),
        width=_int(info.get("w"), MAX_INT32),
        height=_int(info.get("h"), MAX_INT32),
        duration_ms=duration,
    )


def _int(value: object, maximum: int) -> int | None:
    """A non-negative integer from untrusted JSON (integral floats accepted), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float) and (not math.isfinite(value) or not value.is_integer()):
        return None
    number = int(value)
    return number if 0 <= number <= maximum else None


# -- mxc URIs ------------------------------------------------------------------------------------


def parse_mxc(uri: str) -> tuple[str, str]:
    """``(server_name, media_id)`` of ``mxc://<server_name>/<media_id>``, strictly.

    Raises MediaRejected for anything else: other schemes, extra path segments, query strings,
    percent-escapes, NUL or control characters, ``..``, non-ASCII, over-long parts.
    """
    shown = _show(uri)
    if not isinstance(uri, str) or len(uri) > MAX_MXC_LEN:
        raise errors.MediaRejected(f"mxc URI {shown} is not a string of at most {MAX_MXC_LEN}")
    if not uri.startswith("mxc://"):
        raise errors.MediaRejected(f"{shown} is not an mxc:// URI")
    server, sep, media_id = uri[len("mxc://") :].partition("/")
    if not sep:
        raise errors.MediaRejected(f"mxc URI {shown} has no media ID")
    host = server.rsplit(":", 1)[0] if not server.endswith("]") else server
    if not _HOST.fullmatch(server) or ".." in host or len(server) > 255:
        raise errors.MediaRejected(f"mxc URI {shown} has an invalid server name")
    if not _MEDIA_ID.fullmatch(media_id):
        raise errors.MediaRejected(
            f"mxc URI {shown} has an invalid media ID (allowed: A-Z a-z 0-9 _ -)"
        )
    return server, media_id


def _show(value: object) -> str:
    """A log-safe rendering: repr escapes control characters; long values are cut."""
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


# -- Synapse's media_store layout (synapse/media/filepath.py) ------------------------------------


def _component(part: str) -> str:
    if part in (".", "..") or not _COMPONENT.fullmatch(part):
        raise errors.MediaRejected(f"unsafe media_store path component {_show(part)}")
    return part


def _split(file_id: str) -> tuple[str, str, str]:
    """Synapse shards by the first two pairs of characters; the file name is the rest."""
    if len(file_id) < 5:
        raise errors.MediaRejected(f"media file ID {_show(file_id)} is too short to shard")
    return _component(file_id[0:2]), _component(file_id[2:4]), _component(file_id[4:])


def _thumbnail_name(width: int, height: int, mimetype: str, method: str) -> str:
    top, _, sub = mimetype.partition("/")
    return _component(f"{width}-{height}-{top}-{sub}-{method}")


def local_content_path(media_id: str) -> PurePosixPath:
    """``local_content/<id[0:2]>/<id[2:4]>/<id[4:]>`` (the file name drops four characters)."""
    return PurePosixPath("local_content", *_split(media_id))


def local_thumbnail_path(
    media_id: str, width: int, height: int, mimetype: str, method: str
) -> PurePosixPath:
    name = _thumbnail_name(width, height, mimetype, method)
    return PurePosixPath("local_thumbnails", *_split(media_id), name)


def remote_content_path(origin: str, filesystem_id: str) -> PurePosixPath:
    """Remote files are named by ``remote_media_cache.filesystem_id``, not the media ID."""
    return PurePosixPath("remote_content", _component(origin), *_split(filesystem_id))


def remote_thumbnail_path(
    origin: str, filesystem_id: str, width: int, height: int, mimetype: str, method: str
) -> PurePosixPath:
    name = _thumbnail_name(width, height, mimetype, method)
    return PurePosixPath("remote_thumbnail", _component(origin), *_split(filesystem_id), name)


def in_store(store: Path, relative: PurePosixPath) -> Path:
    """``store / relative``, refusing anything that normalises to outside ``store``."""
    if relative.is_absolute():
        raise errors.MediaRejected(f"media_store path {_show(str(relative))} is absolute")
    for part in relative.parts:
        _component(part)
    joined = posixpath.normpath(posixpath.join("/", str(relative)))
    if joined != "/" + str(relative):
        raise errors.MediaRejected(f"media_store path {_show(str(relative))} is not normal")
    return store / relative
