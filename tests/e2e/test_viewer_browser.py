"""The viewer in a real browser: Debian's Chromium driven by Playwright, against the viewer
served by uvicorn over a real archive. Where no browser can be had the tests skip with one line
saying why, except under CI=true, where they must run.

Set VIEWER_SCREENSHOTS=DIR to keep the screenshots (light and dark) for a person to look at.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from listener.export import main as export_main
from listener.export import run as export_run
from listener.viewer import serve as viewer_serve
from tests.viewer_archive import TOKEN, Archive, archive

__all__ = ["archive"]  # the module-scoped fixture

CHROMIUM = Path("/usr/bin/chromium")
PAGE_SIZE = 40
BIG_ROOM = "!big:example.org"
BIG_COUNT = 100_000

try:
    from playwright.async_api import Browser, Page, async_playwright
except ImportError:  # pragma: no cover - the test extra installs it
    async_playwright = None  # type: ignore[assignment]


def _why_no_browser() -> str | None:
    if async_playwright is None:
        return "playwright is not installed (pip install playwright)"
    if not CHROMIUM.exists():
        return f"no browser: {CHROMIUM} is missing (apt-get install chromium)"
    return None


_reason = _why_no_browser()
if _reason is not None:
    if os.environ.get("CI") == "true":
        raise RuntimeError(f"browser tests must run under CI: {_reason}")
    pytest.skip(_reason, allow_module_level=True)

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
async def big_room(archive: Archive) -> str:
    """A chat of 100,000 messages, written straight into the archive (the trigger counts it)."""
    conn = await asyncpg.connect(archive.url)
    try:
        await conn.execute(
            'INSERT INTO messages (event_id, room_id, room_name, sender, "timestamp",'
            " message_type, content, body, synapse_stream_ordering)"
            " SELECT '$big' || g, $1, 'Five years of a group', '@whatsapp_' || (g % 7) ||"
            " ':example.org', $2::timestamptz + g * interval '20 minutes', 'm.text',"
            " jsonb_build_object('msgtype', 'm.text', 'body', 'message number ' || g),"
            " 'message number ' || g, g FROM generate_series(1, $3) g",
            BIG_ROOM,
            datetime(2021, 1, 1, tzinfo=UTC),
            BIG_COUNT,
        )
    finally:
        await conn.close()
    return BIG_ROOM


@pytest.fixture(scope="module")
async def viewer_url(archive: Archive, big_room: str) -> AsyncIterator[str]:
    stop = asyncio.Event()
    ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(
        viewer_serve.serve(
            archive_url=archive.url,
            addr=f"127.0.0.1:{_free_port()}",
            token=TOKEN,
            zone=UTC,
            page_size=PAGE_SIZE,
            media_root=archive.media_root,
            ready=ready.set_result,
            stop=stop,
        )
    )
    try:
        yield await asyncio.wait_for(ready, 10)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


@pytest.fixture(scope="module")
async def chromium() -> AsyncIterator[Browser]:
    assert async_playwright is not None
    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=str(CHROMIUM))
        yield b
        await b.close()


class Watch:
    """Fails the test on any dialog (an XSS that ran) or script error in the page."""

    def __init__(self, page: Page) -> None:
        self.dialogs: list[str] = []
        self.errors: list[str] = []
        page.on("dialog", self._dialog)
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))

    async def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        await dialog.dismiss()


@pytest.fixture
async def viewer_page(chromium: Browser, viewer_url: str) -> AsyncIterator[tuple[Page, Watch]]:
    context = await chromium.new_context(viewport={"width": 1100, "height": 900})
    p = await context.new_page()
    watch = Watch(p)
    await p.goto(f"{viewer_url}/login?token={TOKEN}")
    yield p, watch
    await context.close()
    assert watch.dialogs == []
    assert watch.errors == []


def _shots() -> Path | None:
    target = os.environ.get("VIEWER_SCREENSHOTS")
    return Path(target) if target else None


async def _screenshot(page: Page, name: str, tmp_path: Path) -> Path:
    path = tmp_path / f"{name}.png"
    await page.screenshot(path=str(path), full_page=False)
    keep = _shots()
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, keep / path.name)
    return path


async def test_login_is_required_and_the_token_opens_the_archive(
    chromium: Browser, viewer_url: str, tmp_path: Path
) -> None:
    context = await chromium.new_context()
    p = await context.new_page()
    try:
        await p.goto(viewer_url + "/")
        assert p.url.endswith("/login")
        await p.fill("#token", "wrong-token-0000000000")
        await p.click("button[type=submit]")
        assert "not valid" in await p.inner_text(".error")
        await p.fill("#token", TOKEN)
        await p.click("button[type=submit]")
        await p.wait_for_url(viewer_url + "/")
        assert await p.locator(".chats li").count() == 4
        cookies = await context.cookies()
        [session] = [c for c in cookies if c["name"] == "archiver_viewer"]
        assert session["httpOnly"]
        assert session["sameSite"] == "Strict"
    finally:
        await context.close()


async def test_the_chat_list_and_a_chat_with_every_kind_of_message(
    viewer_page: tuple[Page, Watch], viewer_url: str, archive: Archive, tmp_path: Path
) -> None:
    p, watch = viewer_page
    await _screenshot(p, "chats", tmp_path)
    await p.goto(f"{viewer_url}/chat?room={archive.group_room}")
    # Text, reply, edit with history, deletion, reactions, thread, image, file.
    assert await p.locator("article.msg").count() >= 10
    await p.locator("details.edits summary").first.click()
    history = await p.locator("details.edits ol").first.inner_text()
    assert "Saturday? Meet at the café at 9" in history
    assert await p.locator("article.deleted").count() == 1
    assert "my PIN is 4242" in await p.locator("article.deleted").inner_text()
    assert await p.locator(".reactions li").count() >= 2
    assert await p.locator("a.reply").count() >= 1
    assert await p.locator("a.thread-link").count() >= 2
    # Images really load from the media route (naturalWidth > 0 once decoded).
    image = p.locator('img[alt="cat.png"]')
    await image.scroll_into_view_if_needed()
    await p.wait_for_function(
        "el => el.complete && el.naturalWidth > 0", arg=await image.element_handle()
    )
    # The hostile formatted body and file name are text, not markup.
    assert await p.locator("script").count() == 0
    assert await p.locator("[onerror], [onload], [onclick]").count() == 0
    assert await p.locator('a[href^="javascript:"]').count() == 0
    assert "<img src=x onerror=alert(1)>.svg" in await p.locator("a.file").last.inner_text()
    await p.locator("article.deleted").scroll_into_view_if_needed()
    await _screenshot(p, "chat-light", tmp_path)
    await p.emulate_media(color_scheme="dark")
    await _screenshot(p, "chat-dark", tmp_path)
    assert watch.dialogs == []


async def test_every_media_kind_renders_with_its_player(
    viewer_page: tuple[Page, Watch], viewer_url: str, archive: Archive, tmp_path: Path
) -> None:
    p, _ = viewer_page
    rooms = [archive.group_room, *[s.chat.room_id for s in archive.sent]]
    kinds: set[str] = set()
    for room in dict.fromkeys(rooms):
        await p.goto(f"{viewer_url}/chat?room={room}")
        if await p.locator("video").count():
            kinds.add("video")
        if await p.locator("audio").count():
            kinds.add("audio")
        if await p.locator(".voice").count():
            kinds.add("voice")
        if await p.locator("a.media-img.sticker img").count():
            kinds.add("sticker")
        if await p.locator("a.media-img.image img").count():
            kinds.add("image")
        if await p.locator("a.file").count():
            kinds.add("file")
    assert kinds == {"video", "audio", "voice", "sticker", "image", "file"}


async def test_a_100k_message_chat_pages_both_ways_without_loading_it_all(
    viewer_page: tuple[Page, Watch], viewer_url: str, big_room: str, tmp_path: Path
) -> None:
    p, _ = viewer_page
    await p.goto(f"{viewer_url}/chat?room={big_room}")
    assert await p.locator("article.msg").count() == PAGE_SIZE
    last = await p.locator("article.msg .body").last.inner_text()
    assert last == f"message number {BIG_COUNT}"
    await _screenshot(p, "big-chat", tmp_path)
    for _ in range(3):
        first_before = await p.locator("article.msg .body").first.inner_text()
        await p.click("a.older")
        assert await p.locator("article.msg").count() == PAGE_SIZE
        assert await p.locator("article.msg .body").last.inner_text() == (
            f"message number {int(first_before.split()[-1]) - 1}"
        )
    await p.click("a.newer")
    assert await p.locator("article.msg").count() == PAGE_SIZE
    # The page holds one page of messages, never the chat.
    dom_nodes = await p.evaluate("document.getElementsByTagName('*').length")
    assert dom_nodes < 40 * PAGE_SIZE


async def test_jump_to_a_date(
    viewer_page: tuple[Page, Watch], viewer_url: str, big_room: str
) -> None:
    p, _ = viewer_page
    await p.goto(f"{viewer_url}/chat?room={big_room}")
    await p.fill('input[type="date"]', "2022-06-01")
    await p.click("form.jump button")
    await p.wait_for_url("**date=2022-06-01")
    first = await p.locator("article.msg .time").first.get_attribute("title")
    assert first is not None
    assert first.startswith("2022-06-01T00:")
    start = datetime(2021, 1, 1, tzinfo=UTC)
    first_number = int((await p.locator("article.msg .body").first.inner_text()).split()[-1])
    assert start + timedelta(minutes=20 * first_number) >= datetime(2022, 6, 1, tzinfo=UTC)
    assert start + timedelta(minutes=20 * (first_number - 1)) < datetime(2022, 6, 1, tzinfo=UTC)


async def test_search_finds_a_message_and_its_permalink_shows_it(
    viewer_page: tuple[Page, Watch], viewer_url: str, tmp_path: Path
) -> None:
    p, _ = viewer_page
    await p.fill(".top .search input", "cafe")
    await p.press(".top .search input", "Enter")
    await p.wait_for_url("**/search?q=cafe")
    assert await p.locator(".results mark").first.inner_text() == "café"
    await _screenshot(p, "search", tmp_path)
    await p.locator(".results a").first.click()
    await p.wait_for_url("**/chat?**#m-*")
    target = p.locator("article.target")
    assert await target.count() == 1
    assert "café" in await target.inner_text()
    assert await target.is_visible()
    box = await target.bounding_box()
    assert box is not None
    assert 0 <= box["y"] < 900  # scrolled into view


async def test_an_html_export_opens_offline_from_disk(
    chromium: Browser, archive: Archive, tmp_path: Path
) -> None:
    out = tmp_path / "export"
    await export_main.export(
        archive_url=archive.url,
        options=export_run.Options(out=out, rooms=(archive.group_room,)),
        media_root=archive.media_root,
        storage=None,
    )
    context = await chromium.new_context(offline=True, viewport={"width": 1100, "height": 900})
    p = await context.new_page()
    watch = Watch(p)
    try:
        await p.goto((out / "index.html").as_uri())
        await p.click(".chats a")  # the chat
        await p.click(".chats a")  # its first page
        image = p.locator('img[alt="cat.png"]')
        await image.scroll_into_view_if_needed()
        await p.wait_for_function(
            "el => el.complete && el.naturalWidth > 0", arg=await image.element_handle()
        )
        assert await p.locator("article.deleted").count() == 1
        assert await p.locator("script").count() == 0
        await _screenshot(p, "export-chat", tmp_path)
    finally:
        await context.close()
    assert watch.dialogs == []
    assert watch.errors == []
