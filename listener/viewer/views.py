"""Archive rows → what a page shows: one :class:`MessageView` per message. Pure.

Everything a chat member wrote leaves here either escaped or sanitised (:mod:`sanitize`), as
Markup; the templates add nothing unescaped of their own.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Any, Protocol

from markupsafe import Markup

from listener.viewer import sanitize

COLORS = 8  # avatar colour classes c0..c7 in viewer.css
SNIPPET_CHARS = 140
MAIN_KINDS = ("image", "sticker", "video", "audio", "file")
MSGTYPE_KINDS = {
    "m.text": "text",
    "m.notice": "notice",
    "m.emote": "emote",
    "m.image": "image",
    "m.video": "video",
    "m.audio": "audio",
    "m.file": "file",
    "m.location": "location",
}
# What a browser may show inline: formats it renders without running anything. SVG (scripts)
# and HTML never are; anything else is a download.
INLINE_TYPES = frozenset(
    {
        "image/jpeg", "image/png", "image/gif", "image/webp", "image/avif",
        "video/mp4", "video/webm", "video/ogg", "video/quicktime",
        "audio/ogg", "audio/mpeg", "audio/mp4", "audio/aac", "audio/webm", "audio/wav",
        "audio/x-wav", "audio/flac", "audio/opus",
    }
)  # fmt: skip


def anchor(event_id: str) -> str:
    """A stable, HTML- and URL-safe element ID for a message."""
    return "m-" + hashlib.sha256(event_id.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def display_name(sender: str | None, sender_display_name: str | None) -> str:
    if sender_display_name and sender_display_name.strip():
        return sender_display_name.strip()
    if sender:
        return sender.removeprefix("@").split(":", 1)[0]
    return "unknown"


def initials(name: str) -> str:
    words = [w for w in name.replace("_", " ").split() if w[:1].isalnum()]
    if not words:
        return (name[:1] or "?").upper()
    return "".join(w[0] for w in words[:2]).upper()


def color_class(sender: str | None) -> str:
    digest = hashlib.sha256((sender or "").encode("utf-8", "surrogatepass")).digest()
    return f"c{digest[0] % COLORS}"


def size_label(size: int | None) -> str:
    if size is None:
        return ""
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return ""  # pragma: no cover - the loop always returns


def duration_label(duration_ms: int | None) -> str:
    if not duration_ms or duration_ms < 0:
        return ""
    seconds = duration_ms // 1000
    return f"{seconds // 60}:{seconds % 60:02d}"


def inline_type(mimetype: str | None) -> bool:
    return (mimetype or "").split(";", 1)[0].strip().lower() in INLINE_TYPES


def snippet(text: str | None, limit: int = SNIPPET_CHARS) -> str:
    flat = " ".join((text or "").split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


@dataclass(frozen=True, slots=True)
class MediaView:
    media_id: int
    kind: str
    filename: str
    mimetype: str
    size: str
    duration: str
    width: int | None
    height: int | None
    stored: bool
    status: str
    inline: bool
    voice: bool = False
    poster_id: int | None = None


@dataclass(frozen=True, slots=True)
class ReactionView:
    emoji: str
    count: int
    senders: str


@dataclass(frozen=True, slots=True)
class EditView:
    number: int
    edited_at: str
    body: Markup


@dataclass(frozen=True, slots=True)
class ReplyView:
    event_id: str
    sender_name: str
    snippet: str
    found: bool
    deleted: bool
    timestamp: datetime | None = None


class Links(Protocol):
    """Where a message's links lead: the viewer's routes, or files inside an export. None
    means there is nothing to link to (a file not exported, a message outside the export)."""

    def media(self, item: MediaView) -> str | None: ...
    def download(self, item: MediaView) -> str | None: ...
    def message(self, event_id: str, at: datetime | None) -> str | None: ...
    def thread(self, root: str, at: datetime | None) -> str | None: ...


@dataclass(slots=True)
class MessageView:
    event_id: str
    room_id: str
    anchor: str
    sender: str
    sender_name: str
    initials: str
    color: str
    timestamp: datetime
    day: str
    time: str
    kind: str
    message_type: str
    body: Markup
    deleted: bool
    deleted_at: str
    edited: bool
    edit_count: int
    media: list[MediaView] = field(default_factory=list)
    reply: ReplyView | None = None
    thread_root: str | None = None
    thread_root_at: datetime | None = None
    reactions: list[ReactionView] = field(default_factory=list)
    edits: list[EditView] = field(default_factory=list)
    original_body: Markup | None = None
    from_matrix: bool = True


def kind_of(message_type: str | None, content: Mapping[str, Any]) -> str:
    """What to draw. The archive's ``message_type`` is the msgtype for room messages
    (``m.text``, ``m.image``…) and the event type otherwise (``m.sticker``,
    ``m.room.encrypted``)."""
    if message_type in MSGTYPE_KINDS:
        return MSGTYPE_KINDS[message_type]
    if message_type == "m.sticker":
        return "sticker"
    if message_type == "m.room.encrypted":
        return "encrypted"
    msgtype = content.get("msgtype")
    if isinstance(msgtype, str):
        return MSGTYPE_KINDS.get(msgtype, "text")
    return "text" if message_type in (None, "m.room.message") else "event"


def _caption(kind: str, content: Mapping[str, Any]) -> Markup:
    """A media message's body is its file name unless ``filename`` is set too (MSC2530): then
    the body is a caption."""
    if kind in MAIN_KINDS:
        filename = content.get("filename")
        body = content.get("body")
        if isinstance(filename, str) and isinstance(body, str) and body != filename:
            return sanitize.message_body(content)
        return Markup("")
    return sanitize.message_body(content)


def _media_views(rows: Iterable[Mapping[str, Any]], content: Mapping[str, Any]) -> list[MediaView]:
    rows = list(rows)
    thumbnails = [r for r in rows if r["kind"] == "thumbnail" and r["status"] == "stored"]
    current = {content.get("url"), (content.get("file") or {}).get("url")} - {None}
    main = [r for r in rows if r["kind"] != "thumbnail"]
    # An edit that replaced the media: show what the message shows now.
    if len(main) > 1 and any(r["mxc_url"] in current for r in main):
        main = [r for r in main if r["mxc_url"] in current]
    voice = isinstance(content.get("org.matrix.msc3245.voice"), Mapping)
    views = []
    for r in main:
        mimetype = r["mimetype"] or ""
        views.append(
            MediaView(
                media_id=r["id"],
                kind=r["kind"],
                filename=r["original_filename"] or f"{r['kind']} {r['id']}",
                mimetype=mimetype,
                size=size_label(r["size_bytes"]),
                duration=duration_label(r["duration_ms"]),
                width=r["width"],
                height=r["height"],
                stored=r["status"] == "stored",
                status=r["status"],
                inline=r["status"] == "stored" and inline_type(mimetype),
                voice=voice and r["kind"] == "audio",
                poster_id=thumbnails[0]["id"] if thumbnails and r["kind"] == "video" else None,
            )
        )
    return views


def message_view(row: Mapping[str, Any], zone: tzinfo) -> MessageView:
    content = row["content"] if isinstance(row["content"], Mapping) else {}
    kind = kind_of(row["message_type"], content)
    name = display_name(row["sender"], row["sender_display_name"])
    local = row["timestamp"].astimezone(zone)
    original = row["original_content"]
    deleted_at = row["deleted_at"]
    return MessageView(
        event_id=row["event_id"],
        room_id=row["room_id"],
        anchor=anchor(row["event_id"]),
        sender=row["sender"] or "",
        sender_name=name,
        initials=initials(name),
        color=color_class(row["sender"]),
        timestamp=row["timestamp"],
        day=local.strftime("%A, %d %B %Y"),
        time=local.strftime("%H:%M"),
        kind=kind,
        message_type=row["message_type"] or "",
        body=_caption(kind, content),
        deleted=deleted_at is not None,
        deleted_at=deleted_at.astimezone(zone).strftime("%d %b %Y %H:%M") if deleted_at else "",
        edited=(row["edit_count"] or 0) > 0,
        edit_count=row["edit_count"] or 0,
        thread_root=row["thread_root_event_id"],
        original_body=(sanitize.message_body(original) if isinstance(original, Mapping) else None),
        from_matrix=bool(row["has_matrix_event"]),
    )


def reply_view(event_id: str, target: Mapping[str, Any] | None) -> ReplyView:
    if target is None:
        return ReplyView(event_id, "", "message not in the archive", found=False, deleted=False)
    return ReplyView(
        event_id=event_id,
        sender_name=display_name(target["sender"], target["sender_display_name"]),
        snippet=snippet(target["body"]),
        found=True,
        deleted=target["deleted_at"] is not None,
        timestamp=target["timestamp"],
    )


def assemble(
    rows: Sequence[Mapping[str, Any]],
    *,
    zone: tzinfo,
    reply_targets: Mapping[str, Mapping[str, Any]],
    reactions: Iterable[Mapping[str, Any]],
    edits: Iterable[Mapping[str, Any]],
    media: Iterable[Mapping[str, Any]],
) -> list[MessageView]:
    """The views of one page of messages, with what the page's other queries found."""
    reactions_by = defaultdict(list)
    for r in reactions:
        reactions_by[r["message_event_id"]].append(
            ReactionView(
                emoji=r["emoji"],
                count=r["count"],
                senders=", ".join(display_name(s, None) for s in (r["senders"] or [])),
            )
        )
    edits_by = defaultdict(list)
    for e in edits:
        content = e["new_content"] if isinstance(e["new_content"], Mapping) else {}
        body = sanitize.message_body(content) if content else sanitize.text_body(e["body"] or "")
        edits_by[e["message_event_id"]].append(
            EditView(
                number=e["edit_number"],
                edited_at=e["edited_at"].astimezone(zone).strftime("%d %b %Y %H:%M"),
                body=body,
            )
        )
    media_by = defaultdict(list)
    for m in media:
        media_by[m["event_id"]].append(m)
    views = []
    for row in rows:
        view = message_view(row, zone)
        content = row["content"] if isinstance(row["content"], Mapping) else {}
        view.media = _media_views(media_by.get(view.event_id, ()), content)
        view.reactions = reactions_by.get(view.event_id, [])
        view.edits = edits_by.get(view.event_id, [])
        reply_to = row["reply_to_event_id"]
        if reply_to:
            view.reply = reply_view(reply_to, reply_targets.get(reply_to))
        root = reply_targets.get(view.thread_root or "")
        view.thread_root_at = root["timestamp"] if root is not None else None
        views.append(view)
    return views


def mark_excerpt(excerpt: str | None) -> Markup:
    """A search excerpt escaped, its hits (between \\x02 and \\x03) wrapped in <mark>."""
    out: list[str] = []
    for i, part in enumerate((excerpt or "").split("\x02")):
        hit, _, rest = part.partition("\x03") if i else ("", "", part)
        if hit:
            out.append(f"<mark>{Markup.escape(hit)}</mark>")
        out.append(str(Markup.escape(rest)))
    return Markup("".join(out))  # every piece above is escaped
