"""``archiver-db export``: chats to a folder, page by page, memory bounded by one batch.

Layout of the folder:

    export.json                  what was exported, with which options, up to when (the watermark)
    index.html                   (html) every chat exported
    media/<sha256><ext>          (html, json) each file once, named by its content
    chats/<name>-<hash>/         one folder per chat, named by the export (never by event data)
        index.html | chat.json   the chat's pages
        2024-03.html | .json     a month (or a day, an hour: see pages.py)
        _chat.txt + attachments  (txt) WhatsApp's own export layout

``--incremental`` re-renders only the pages whose month changed since the last run's watermark
(a new message, an edit, a deletion, a reaction, media stored late) and the pages next to new
ones (their links), and rewrites a chat's ``_chat.txt`` only when that chat changed.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal, TextIO
from zoneinfo import ZoneInfo

from listener.core import errors
from listener.export import html, json_format, media, pages, whatsapp_txt
from listener.export import reader as export_reader
from listener.viewer import reader, views

logger = logging.getLogger(__name__)

Format = Literal["html", "json", "txt"]
MANIFEST = "export.json"
BATCH = 500
# The watermark is the archive's clock at the start of a run, less this: a write that committed
# just after the run read its rows but began before the watermark is seen again next time.
WATERMARK_MARGIN = timedelta(minutes=5)
UTC_ZONE = ZoneInfo("UTC")
FAR_PAST = reader.START_OF_TIME
FAR_FUTURE = reader.END_OF_TIME


class ExportError(errors.ArchiverError):
    """The export cannot be written as asked."""


@dataclass(frozen=True, slots=True)
class Options:
    out: Path
    fmt: Format = "html"
    media: media.Mode = "copy"
    rooms: tuple[str, ...] = ()
    since: datetime | None = None
    until: datetime | None = None
    incremental: bool = False
    zone: ZoneInfo = UTC_ZONE
    page_limit: int = pages.PAGE_LIMIT

    def fingerprint(self) -> dict[str, Any]:
        """What must not change between incremental runs into one folder."""
        return {
            "format": self.fmt,
            "media": self.media,
            "rooms": sorted(self.rooms),
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
            "timezone": self.zone.key,
            "page_limit": self.page_limit,
        }


@dataclass
class Summary:
    chats: int = 0
    pages_written: int = 0
    pages_kept: int = 0
    messages_written: int = 0
    media_placed: int = 0
    media_failed: int = 0
    removed: list[str] = field(default_factory=list)


@contextmanager
def _atomic(path: Path) -> Iterator[TextIO]:
    """A text file written under a temporary name and renamed into place when complete."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.part")
    try:
        with temporary.open("w", encoding="utf-8", newline="\n") as out:
            yield out
        temporary.replace(path)
    finally:
        temporary.unlink(missing_ok=True)


def _write_if_changed(path: Path, text: str) -> None:
    """An index is rewritten only when what it says changed (an incremental run leaves an
    unchanged chat's files exactly as they were)."""
    try:
        if path.read_text("utf-8") == text:
            return
    except FileNotFoundError:
        pass
    with _atomic(path) as out:
        out.write(text)


class ExportLinks:
    """Where a page's links lead inside the export (views.Links)."""

    def __init__(
        self,
        plan: pages.Plan,
        current: str,
        media_paths: Mapping[int, str],
        in_range: Callable[[datetime], bool],
    ) -> None:
        self._plan = plan
        self._current = current
        self._media = media_paths
        self._in_range = in_range

    def media(self, item: views.MediaView) -> str | None:
        return self._media.get(item.media_id)

    def download(self, item: views.MediaView) -> str | None:
        return self._media.get(item.media_id)

    def message(self, event_id: str, at: datetime | None) -> str | None:
        if at is None or not self._in_range(at):
            return None
        page = self._plan.page_of(at)
        return ("" if page == self._current else f"{page}.html") + "#" + views.anchor(event_id)

    def thread(self, root: str, at: datetime | None) -> str | None:
        return self.message(root, at)


def media_name(row: Mapping[str, Any]) -> str:
    """A file's name in the export's shared media folder: its content address."""
    return f"{row['sha256']}{whatsapp_txt.extension(row['mimetype'], row['original_filename'])}"


class Exporter:
    def __init__(
        self,
        archive: reader.ArchiveReader,
        export_archive: export_reader.ExportReader,
        placer: media.MediaPlacer,
        options: Options,
        *,
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        self.archive = archive
        self.extra = export_archive
        self.placer = placer
        self.options = options
        self.progress = progress or (lambda done, total: None)
        self.renderer = html.HtmlRenderer()
        self.summary = Summary()
        self._done = 0
        self._total = 0

    # -- the whole run ---------------------------------------------------------------------
    async def run(self) -> Summary:
        out = self.options.out
        manifest = self._manifest()
        started = await self.extra.now()
        changed: set[tuple[str, datetime]] | None = None
        if self.options.incremental and manifest is not None:
            since = datetime.fromisoformat(manifest["watermark"]) - WATERMARK_MARGIN
            changed = {
                (room, month.astimezone(self.options.zone))
                for room, month in await self.extra.changed_months(since, self.options.zone.key)
            }
        rooms = await self._rooms()
        old_rooms: dict[str, Any] = (manifest or {}).get("chats", {})
        work = []
        for room in rooms:
            plan = await self._plan(room.room_id)
            old = old_rooms.get(room.room_id, {})
            todo = self._pages_to_write(room.room_id, plan, old, changed)
            work.append((room, plan, old, todo))
            self._total += sum(p.count for p in todo)
        self.progress(0, self._total)
        chats = {}
        for room, plan, old, todo in work:
            chats[room.room_id] = await self._export_room(room, plan, old, todo)
        if self.options.fmt == "html":
            with _atomic(out / "index.html") as index:
                index.write(
                    self.renderer.root_index(
                        title="Chats",
                        root="",
                        chats=[
                            {
                                "room": room,
                                "slug": chats[room.room_id]["slug"],
                                "count": chats[room.room_id]["messages"],
                            }
                            for room, *_ in work
                        ],
                        exported_at=f"{started.astimezone(self.options.zone):%d %b %Y %H:%M}",
                        since=self._label(self.options.since),
                        until=self._label(self.options.until),
                    )
                )
        with _atomic(out / MANIFEST) as target:
            json.dump(
                {
                    "schema": json_format.SCHEMA_EXPORT,
                    "options": self.options.fingerprint(),
                    "watermark": started.isoformat(),
                    "chats": chats,
                },
                target,
                ensure_ascii=False,
                indent=1,
            )
        self.summary.chats = len(chats)
        self.summary.media_placed = self.placer.placed
        self.summary.media_failed = self.placer.failed
        return self.summary

    def _label(self, at: datetime | None) -> str:
        return f"{at.astimezone(self.options.zone):%d %b %Y}" if at else ""

    def _manifest(self) -> dict[str, Any] | None:
        out = self.options.out
        path = out / MANIFEST
        if not path.exists():
            if out.exists() and any(out.iterdir()):
                raise ExportError(
                    f"{out} is not empty and holds no {MANIFEST}: choose an empty folder"
                )
            return None
        try:
            manifest: dict[str, Any] = json.loads(path.read_text("utf-8"))
        except (OSError, ValueError) as exc:
            raise ExportError(f"{path} cannot be read ({exc}): choose another folder") from None
        if manifest.get("options") != self.options.fingerprint():
            raise ExportError(
                f"{out} holds an export made with other options "
                f"({manifest.get('options')}): export into a new folder"
            )
        return manifest

    async def _rooms(self) -> list[reader.Room]:
        rooms = await self.archive.rooms()
        if not self.options.rooms:
            return rooms
        known = {r.room_id: r for r in rooms}
        missing = [r for r in self.options.rooms if r not in known]
        if missing:
            raise ExportError(f"no such chat in the archive: {', '.join(missing)}")
        return [known[r] for r in self.options.rooms]

    # -- planning --------------------------------------------------------------------------
    def _bounds(self) -> tuple[datetime, datetime]:
        return self.options.since or FAR_PAST, self.options.until or FAR_FUTURE

    def _in_range(self, at: datetime) -> bool:
        start, end = self._bounds()
        return start <= at < end

    async def _plan(self, room_id: str) -> pages.Plan:
        zone, key, limit = self.options.zone, self.options.zone.key, self.options.page_limit
        start, end = self._bounds()
        months = await self.extra.counts("month", room_id, key, start, end)
        days: dict[datetime, int] = {}
        hours: dict[datetime, int] = {}
        for month, count in months.items():
            if count > limit:
                local = month.astimezone(zone)
                following = pages.next_month(local)
                month_days = await self.extra.counts(
                    "day", room_id, key, max(local, start), min(following, end)
                )
                days.update(month_days)
                for day, day_count in month_days.items():
                    if day_count > limit:
                        day_local = day.astimezone(zone)
                        hours.update(
                            await self.extra.counts(
                                "hour", room_id, key, max(day_local, start),
                                min(pages.next_day(day_local, zone), end),
                            )
                        )  # fmt: skip
        return pages.plan(zone=zone, months=months, days=days, hours=hours, limit=limit)

    def _pages_to_write(
        self,
        room_id: str,
        plan: pages.Plan,
        old: Mapping[str, Any],
        changed: set[tuple[str, datetime]] | None,
    ) -> list[pages.Page]:
        if self.options.fmt == "txt":
            touched = changed is None or any(room == room_id for room, _ in changed) or not old
            return list(plan.pages) if touched else []
        old_names: list[str] = old.get("pages", [])
        now = plan.neighbours()
        before: dict[str, tuple[str | None, str | None]] = {
            name: (old_names[i - 1] if i else None,
                   old_names[i + 1] if i + 1 < len(old_names) else None)
            for i, name in enumerate(old_names)
        }  # fmt: skip
        months = {m for room, m in changed or () if room == room_id}
        todo = []
        for page in plan.pages:
            if (
                changed is None
                or pages.month_of(page.start, self.options.zone) in months
                or before.get(page.name) != now[page.name]  # new, or its neighbours changed
            ):
                todo.append(page)
        return todo

    # -- one chat --------------------------------------------------------------------------
    async def _export_room(
        self, room: reader.Room, plan: pages.Plan, old: Mapping[str, Any], todo: list[pages.Page]
    ) -> dict[str, Any]:
        slug = old.get("slug") or pages.slug(room.room_id, room.name)
        folder = self.options.out / "chats" / slug
        folder.mkdir(parents=True, exist_ok=True)
        total = sum(p.count for p in plan.pages)
        if self.options.fmt == "txt":
            if todo:
                await self._write_txt(room, plan, folder)
                self.summary.pages_written += 1
            else:
                self.summary.pages_kept += 1
        else:
            for page in todo:
                await self._write_page(room, plan, page, folder)
            self.summary.pages_written += len(todo)
            self.summary.pages_kept += len(plan.pages) - len(todo)
            names = {p.name for p in plan.pages}
            suffix = ".html" if self.options.fmt == "html" else ".json"
            for stale in set(old.get("pages", [])) - names:
                (folder / f"{stale}{suffix}").unlink(missing_ok=True)
                self.summary.removed.append(f"{slug}/{stale}{suffix}")
            self._write_chat_index(room, plan, folder, total)
        return {"slug": slug, "pages": [p.name for p in plan.pages], "messages": total}

    def _page_label(self, page: pages.Page) -> str:
        if "T" in page.name:
            return f"{page.start:%d %B %Y, %H:00}"
        if page.name.count("-") == 2:
            return f"{page.start:%A %d %B %Y}"
        return f"{page.start:%B %Y}"

    def _write_chat_index(
        self, room: reader.Room, plan: pages.Plan, folder: Path, total: int
    ) -> None:
        if self.options.fmt == "html":
            text = self.renderer.chat_index(
                title=room.name or room.room_id,
                root="../../",
                room=room,
                total=total,
                pages=[
                    {"name": p.name, "label": self._page_label(p), "count": p.count}
                    for p in plan.pages
                ],
            )
            _write_if_changed(folder / "index.html", text)
            return
        document = {
            "schema": json_format.SCHEMA_CHAT,
            "room": json_format.room(room),
            "pages": [
                {"file": f"{p.name}.json", "start": p.start.isoformat(),
                 "end": p.end.isoformat(), "count": p.count}
                for p in plan.pages
            ],
        }  # fmt: skip
        _write_if_changed(folder / "chat.json", json.dumps(document, ensure_ascii=False, indent=1))

    async def _batches(
        self, room_id: str, start: datetime, end: datetime
    ) -> Any:  # AsyncIterator[list[dict[str, Any]]]
        """The chat's messages in [start, end), oldest first, BATCH at a time."""
        lo, hi = self._bounds()
        start, end = max(start, lo), min(end, hi)
        cursor = reader.Cursor.start_of(start)
        while True:
            rows = await self.archive.after(room_id, cursor, BATCH)
            inside = [r for r in rows if r["timestamp"] < end]
            if inside:
                yield inside
                self._done += len(inside)
                self.summary.messages_written += len(inside)
                self.progress(self._done, self._total)
            if len(inside) < BATCH:
                return
            cursor = reader.Cursor.of(rows[-1])

    async def _place_media(self, rows: list[Mapping[str, Any]], *, prefix: str) -> dict[int, str]:
        """Each stored file of these messages in the shared media folder; its path as seen
        from a page (``prefix``: the way back to the export's root)."""
        paths = {}
        for row in rows:
            relative = await self.placer.place(row, f"media/{media_name(row)}")
            if relative is not None:
                paths[row["id"]] = prefix + relative
        return paths

    async def _write_page(
        self, room: reader.Room, plan: pages.Plan, page: pages.Page, folder: Path
    ) -> None:
        previous, following = plan.neighbours()[page.name]
        if self.options.fmt == "json":
            await self._write_json_page(room, page, folder)
            return
        with _atomic(folder / f"{page.name}.html") as out:
            out.write(
                self.renderer.page_head(
                    title=f"{room.name or room.room_id} · {self._page_label(page)}",
                    root="../../",
                    room=room,
                    page_label=self._page_label(page),
                    count=page.count,
                    prev=previous,
                )
            )
            day = None
            async for rows in self._batches(room.room_id, page.start, page.end):
                media_rows = await self.archive.media([r["event_id"] for r in rows])
                paths = await self._place_media(media_rows, prefix="../../")
                batch = await self.archive.message_views(
                    rows, zone=self.options.zone, media_rows=media_rows
                )
                links = ExportLinks(plan, page.name, paths, self._in_range)
                out.write(self.renderer.batch(batch, links=links, previous_day=day))
                day = batch[-1].day
            out.write(self.renderer.page_foot(next=following))

    async def _write_json_page(self, room: reader.Room, page: pages.Page, folder: Path) -> None:
        with _atomic(folder / f"{page.name}.json") as out:
            head = {
                "schema": json_format.SCHEMA_PAGE,
                "room": json_format.room(room),
                "page": {"name": page.name, "start": page.start.isoformat(),
                         "end": page.end.isoformat()},
            }  # fmt: skip
            out.write(json.dumps(head, ensure_ascii=False)[:-1] + ', "messages": [\n')
            first = True
            async for rows in self._batches(room.room_id, page.start, page.end):
                ids = [r["event_id"] for r in rows]
                media_rows = await self.archive.media(ids)
                paths = await self._place_media(media_rows, prefix="")
                reactions = _grouped(await self.extra.reactions(ids), "message_event_id")
                edits = _grouped(
                    await self.archive.edits([r["event_id"] for r in rows if r["edit_count"]]),
                    "message_event_id",
                )
                by_event = _grouped(media_rows, "event_id")
                for row in rows:
                    item = json_format.message(
                        row,
                        reactions=reactions.get(row["event_id"], []),
                        edits=edits.get(row["event_id"], []),
                        media=[(m, paths.get(m["id"])) for m in by_event.get(row["event_id"], [])],
                    )
                    out.write(("" if first else ",\n") + json.dumps(item, ensure_ascii=False))
                    first = False
            out.write("\n]}\n")

    async def _write_txt(self, room: reader.Room, plan: pages.Plan, folder: Path) -> None:
        zone = self.options.zone
        with _atomic(folder / "_chat.txt") as out:
            for page in plan.pages:
                async for rows in self._batches(room.room_id, page.start, page.end):
                    media_rows = await self.archive.media([r["event_id"] for r in rows])
                    by_event = _grouped(media_rows, "event_id")
                    for row in rows:
                        content = row["content"] if isinstance(row["content"], Mapping) else {}
                        attached, omitted = [], []
                        for m in by_event.get(row["event_id"], []):
                            if m["kind"] == "thumbnail":
                                continue
                            name = whatsapp_txt.attachment_name(
                                m["id"], m["kind"], row["timestamp"], zone,
                                m["original_filename"], m["mimetype"],
                            )  # fmt: skip
                            if await self.placer.place(m, str(folder.relative_to(
                                self.options.out) / name)) is not None:  # fmt: skip
                                attached.append(name)
                            else:
                                omitted.append(m["kind"])
                        kind = views.kind_of(row["message_type"], content)
                        text = row["body"] or ""
                        if kind in views.MAIN_KINDS and content.get("filename") in (None, text):
                            text = ""  # the body is only the file name: no caption
                        out.write(
                            whatsapp_txt.lines(
                                at=row["timestamp"],
                                zone=zone,
                                sender=views.display_name(
                                    row["sender"], row["sender_display_name"]
                                ),
                                text=text,
                                attachments=attached,
                                omitted=omitted,
                                edited=bool(row["edit_count"]),
                                deleted=row["deleted_at"] is not None,
                            )
                        )


def _grouped(rows: list[Any], key: str) -> dict[str, list[Any]]:
    grouped: dict[str, list[Any]] = {}
    for row in rows:
        grouped.setdefault(row[key], []).append(row)
    return grouped
