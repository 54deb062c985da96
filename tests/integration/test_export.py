"""archiver-db export over a real archive (filled by the real pipeline): HTML that opens offline,
the JSON schema, WhatsApp's text format, media, date ranges, pages by month, and incremental
runs that rewrite only what changed."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import pytest

from listener.export import main as export_main
from listener.export import run
from tests.viewer_archive import Archive, archive

__all__ = ["archive"]  # the module-scoped fixture

MONTHS_ROOM = "!months:example.org"
WHATSAPP_LINE = re.compile(r"^\u200e?\[\d{2}/\d{2}/\d{4}, \d{2}:\d{2}:\d{2}\] [^:\n]+: ")


@pytest.fixture(scope="module")
async def months_room(archive: Archive) -> str:
    """A chat over three months (one of them over a small page limit), with replies across
    pages, archived a day ago (older than an incremental export's safety margin)."""
    conn = await asyncpg.connect(archive.url)
    try:
        base = datetime(2024, 1, 30, 23, tzinfo=UTC)
        rows = []
        for i in range(75):  # January 3, February 58 (two a day), March 14
            at = base + timedelta(hours=12 * i)
            reply = f"$m{i - 45:03d}" if i >= 65 else None
            rows.append((f"$m{i:03d}", at, f"month message {i}", reply))
        await conn.executemany(
            'INSERT INTO messages (event_id, room_id, room_name, sender, "timestamp",'
            " message_type, content, body, reply_to_event_id, synapse_stream_ordering,"
            " updated_at)"
            " VALUES ($1, $5, 'Months', '@whatsapp_1:example.org', $2, 'm.text',"
            " jsonb_build_object('msgtype', 'm.text', 'body', $3::text), $3, $4,"
            " (regexp_replace($1, '\\D', '', 'g'))::bigint, now() - interval '1 day')",
            [(*row, MONTHS_ROOM) for row in rows],
        )
    finally:
        await conn.close()
    return MONTHS_ROOM


async def _export(archive: Archive, out: Path, **options: Any) -> run.Summary:
    return await export_main.export(
        archive_url=archive.url,
        options=run.Options(out=out, **options),
        media_root=archive.media_root,
        storage=None,
    )


def _local_refs(page: str) -> list[str]:
    refs = re.findall(r'(?:href|src)="([^"#]+)(?:#[^"]*)?"', page)
    return [r for r in refs if not r.startswith(("http:", "https:", "mailto:"))]


async def test_html_export_opens_offline_with_every_file_it_links(
    archive: Archive, months_room: str, tmp_path: Path
) -> None:
    out = tmp_path / "html"
    summary = await _export(archive, out)
    assert summary.chats == 4
    assert summary.media_failed == 0
    index = (out / "index.html").read_text()
    assert index.count('<a href="chats/') == 4
    pages = sorted(out.glob("chats/*/*.html"))
    assert pages
    for page in [out / "index.html", *pages]:
        text = page.read_text()
        assert "<script" not in text.lower()
        assert "<link" not in text  # the stylesheet is inlined
        assert "script-src 'none'" in text
        for ref in _local_refs(text):
            assert (page.parent / ref).resolve().exists(), f"{page.name} links {ref}"
    # Media: every file once, named by its content, and its bytes are that content.
    files = list((out / "media").iterdir())
    assert files
    for file in files:
        assert hashlib.sha256(file.read_bytes()).hexdigest() == file.name.split(".")[0]


async def test_the_group_chat_exports_everything_the_viewer_shows(
    archive: Archive, tmp_path: Path
) -> None:
    out = tmp_path / "one"
    await _export(archive, out, rooms=(archive.group_room,))
    [chat] = list((out / "chats").iterdir())
    [page] = [p for p in chat.glob("*.html") if p.name != "index.html"]
    text = page.read_text()
    assert "edited 2 times" in text
    assert "my PIN is 4242" in text
    assert 'class="flag del"' in text
    assert '<span class="emoji">👍</span> <span class="n">2</span>' in text
    assert "<b>topo</b>" in text
    assert "javascript:" not in text
    assert "&#34;&gt;&lt;img src=x onerror=alert(1)&gt;.svg" in text
    assert re.search(r'<img src="../../media/[0-9a-f]{64}\.png"', text)


async def test_pages_follow_the_calendar_and_replies_link_across_pages(
    archive: Archive, months_room: str, tmp_path: Path
) -> None:
    out = tmp_path / "months"
    await _export(archive, out, rooms=(months_room,), page_limit=25)
    [chat] = list((out / "chats").iterdir())
    names = sorted(p.stem for p in chat.glob("*.html") if p.name != "index.html")
    # January: 3 messages; February: 58 > 25, so a page a day; March: 14, one page.
    assert names[0] == "2024-01"
    assert names[-1] == "2024-03"
    assert "2024-02-15" in names
    assert len(names) == 2 + 29
    # A reply in March to a message in February links to that day's page and anchor.
    march = (chat / "2024-03.html").read_text()
    links = re.findall(r'class="reply" href="([^"]+)"', march)
    assert links
    for link in links:
        target, anchor = link.split("#")
        assert anchor in (chat / target).read_text()
    # Every message exactly once across the pages.
    found = []
    for name in names:
        found += re.findall(r"month message (\d+)</div>", (chat / f"{name}.html").read_text())
    assert sorted(map(int, found)) == list(range(75))


async def test_since_and_until_bound_what_is_exported(
    archive: Archive, months_room: str, tmp_path: Path
) -> None:
    out = tmp_path / "range"
    summary = await _export(
        archive,
        out,
        rooms=(months_room,),
        since=datetime(2024, 2, 10, tzinfo=UTC),
        until=datetime(2024, 2, 20, tzinfo=UTC),
        fmt="json",
    )
    assert summary.messages_written == 20
    [chat] = list((out / "chats").iterdir())
    [page] = [p for p in chat.glob("*.json") if p.name != "chat.json"]
    data = json.loads(page.read_text())
    stamps = [m["timestamp"] for m in data["messages"]]
    assert stamps[0] == "2024-02-10T11:00:00Z"
    assert stamps[-1] == "2024-02-19T23:00:00Z"


async def test_json_follows_its_schema(archive: Archive, tmp_path: Path) -> None:
    out = tmp_path / "json"
    await _export(archive, out, rooms=(archive.group_room,), fmt="json")
    manifest = json.loads((out / "export.json").read_text())
    assert manifest["schema"] == "archiver-db/export/1"
    [chat] = list((out / "chats").iterdir())
    index = json.loads((chat / "chat.json").read_text())
    assert index["schema"] == "archiver-db/export-chat/1"
    messages = []
    for entry in index["pages"]:
        page = json.loads((chat / entry["file"]).read_text())
        assert page["schema"] == "archiver-db/export-page/1"
        assert len(page["messages"]) == entry["count"]
        messages += page["messages"]
    by_body = {m["body"]: m for m in messages}
    plan = next(m for m in messages if m["edited"])
    assert plan["edited"]["count"] == 2
    assert [e["number"] for e in plan["edited"]["edits"]] == [1, 2]
    assert plan["edited"]["original_content"]["body"].endswith("at 9")
    assert sorted(r["key"] for r in plan["reactions"]) == ["👍", "👍"]
    deleted = by_body["my PIN is 4242 (oops, wrong chat)"]
    assert deleted["deleted"]["redaction_event_id"].startswith("$")
    with_media = [m for m in messages if m["media"]]
    assert with_media
    for message in with_media:
        for item in message["media"]:
            assert item["sha256"] is not None
            assert item["file"] is not None
            data = (out / item["file"]).read_bytes()
            assert hashlib.sha256(data).hexdigest() == item["sha256"]
    assert {"event_id", "timestamp", "sender", "kind", "content", "network"} <= plan.keys()


async def test_txt_is_whatsapps_own_format(archive: Archive, tmp_path: Path) -> None:
    out = tmp_path / "txt"
    await _export(archive, out, rooms=(archive.group_room,), fmt="txt")
    [chat] = list((out / "chats").iterdir())
    text = (chat / "_chat.txt").read_text()
    starts = [line for line in text.splitlines() if WHATSAPP_LINE.match(line)]
    assert len(starts) >= 20
    assert "\u200e<This message was edited>" in text
    assert "my PIN is 4242 (oops, wrong chat) \u200e<This message was deleted>" in text
    attached = re.findall(r"\u200e<attached: ([^>]+)>", text)
    assert any(
        re.fullmatch(r"\d{8}-PHOTO-\d{4}-\d\d-\d\d-\d\d-\d\d-\d\d\.png", a) for a in attached
    )
    assert any(re.fullmatch(r"\d{8}-STICKER-.*\.png", a) for a in attached)
    assert any(a.endswith(".opus") and "-AUDIO-" in a for a in attached)
    for name in attached:
        assert (chat / name).is_file()
        assert "/" not in name


async def test_media_can_be_linked_or_left_out(archive: Archive, tmp_path: Path) -> None:
    linked = tmp_path / "linked"
    await _export(archive, linked, rooms=(archive.group_room,), media="link")
    files = list((linked / "media").iterdir())
    assert files
    assert all(f.is_symlink() and f.resolve().is_relative_to(archive.media_root) for f in files)
    none = tmp_path / "none"
    await _export(archive, none, rooms=(archive.group_room,), media="none")
    assert not (none / "media").exists()
    page = next(p for p in none.glob("chats/*/*.html") if p.name != "index.html").read_text()
    assert "not exported" in page


async def test_incremental_rewrites_only_what_changed(
    archive: Archive, months_room: str, tmp_path: Path
) -> None:
    out = tmp_path / "inc"
    first = await _export(archive, out, page_limit=25, incremental=True)
    assert first.pages_kept == 0
    chat = next(p for p in (out / "chats").iterdir() if "months" in p.name)
    before = {p.name: p.read_bytes() for p in chat.glob("*.html")}
    mtimes = {p.name: p.stat().st_mtime_ns for p in chat.glob("*.html")}
    again = await _export(archive, out, page_limit=25, incremental=True)
    # Nothing changed, except what the watermark's safety margin brings back: the months of
    # messages written in the last minutes (the pipeline's, not this 2024 chat).
    assert again.pages_written < first.pages_written
    assert {p.name: p.stat().st_mtime_ns for p in chat.glob("*.html")} == mtimes
    conn = await asyncpg.connect(archive.url)
    try:
        await conn.execute(
            "UPDATE messages SET body = 'month message 70 (edited)', content ="
            " jsonb_build_object('msgtype', 'm.text', 'body', 'month message 70 (edited)'),"
            " edit_count = 1, edited_at = now() WHERE event_id = '$m050'"
        )
        await conn.execute(
            'INSERT INTO messages (event_id, room_id, sender, "timestamp", message_type,'
            " content, body) VALUES ('$m100', $1, '@whatsapp_1:example.org',"
            " '2024-04-02 10:00+00', 'm.text',"
            ' \'{"msgtype": "m.text", "body": "april message"}\', \'april message\')',
            months_room,
        )
    finally:
        await conn.close()
    third = await _export(archive, out, page_limit=25, incremental=True)
    after = {p.name: p.read_bytes() for p in chat.glob("*.html")}
    changed = {name for name in after if before.get(name) != after[name]}
    # $m050 lives on 2024-02-24 (2024-01-30 23:00 + 25 days); April is new; March links to it.
    assert changed == {"2024-02-24.html", "2024-03.html", "2024-04.html", "index.html"}
    assert "april message" in after["2024-04.html"].decode()
    assert third.pages_written >= 2


async def test_an_export_folder_is_only_ever_an_export(archive: Archive, tmp_path: Path) -> None:
    out = tmp_path / "busy"
    out.mkdir()
    (out / "thesis.docx").write_text("mine")
    with pytest.raises(run.ExportError, match="not empty"):
        await _export(archive, out)
    assert (out / "thesis.docx").read_text() == "mine"
    fresh = tmp_path / "fresh"
    await _export(archive, fresh, rooms=(archive.group_room,))
    with pytest.raises(run.ExportError, match="other options"):
        await _export(archive, fresh, rooms=(archive.group_room,), fmt="json", incremental=True)
    with pytest.raises(run.ExportError, match="no such chat"):
        await _export(archive, tmp_path / "x", rooms=("!missing:example.org",))


async def test_time_zone_moves_messages_between_days(
    archive: Archive, months_room: str, tmp_path: Path
) -> None:
    out = tmp_path / "tz"
    await _export(archive, out, rooms=(months_room,), fmt="txt", zone=ZoneInfo("Pacific/Auckland"))
    [chat] = list((out / "chats").iterdir())
    first = (chat / "_chat.txt").read_text().splitlines()[0]
    assert first.startswith("[31/01/2024, 12:00:00] whatsapp_1: month message 0")
