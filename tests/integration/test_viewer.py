"""The viewer over a real archive: filled by the real pipeline from the bridge simulator (texts,
replies, media of every kind, edits, reactions, a thread, a deletion, hostile HTML), read
through the ASGI app with real PostgreSQL queries."""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest

from listener.db import connect
from listener.schema import migrate
from listener.viewer import app as viewer_app
from listener.viewer import media_files, reader
from tests import pg
from tests.conftest import psql_file
from tests.viewer_archive import TOKEN, Archive, archive

__all__ = ["archive"]  # the module-scoped fixture


@pytest.fixture
async def pool(archive: Archive) -> AsyncIterator[asyncpg.Pool]:
    p = await asyncpg.create_pool(archive.url, min_size=1, max_size=4)
    yield p
    await p.close()


def _app(pool: asyncpg.Pool, archive: Archive, page_size: int = 100) -> Any:
    return viewer_app.build(
        reader.ArchiveReader(pool),
        media_files.LocalMediaFiles(archive.media_root),
        token=TOKEN,
        zone=UTC,
        page_size=page_size,
    )


@pytest.fixture
async def client(pool: asyncpg.Pool, archive: Archive) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=_app(pool, archive))
    async with httpx.AsyncClient(
        transport=transport,
        base_url="http://viewer",
        headers={"Authorization": f"Bearer {TOKEN}"},
    ) as c:
        yield c


@pytest.fixture
async def anonymous(pool: asyncpg.Pool, archive: Archive) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=_app(pool, archive))
    async with httpx.AsyncClient(transport=transport, base_url="http://viewer") as c:
        yield c


async def _media_id(pool: asyncpg.Pool, event_id: str) -> int:
    return int(
        await pool.fetchval(
            "SELECT id FROM media WHERE event_id = $1 AND kind <> 'thumbnail'", event_id
        )
    )


def _routes(archive: Archive, media_id: int) -> list[tuple[str, str]]:
    event = archive.sent[0].event_id
    return [
        ("GET", "/"),
        ("GET", f"/chat?room={archive.group_room}"),
        ("GET", f"/thread?root={event}"),
        ("GET", f"/m?event={event}"),
        ("GET", "/search?q=crag"),
        ("GET", f"/media/{media_id}"),
        ("GET", "/media/mxc?url=mxc://example.org/abc"),
        ("POST", "/logout"),
        ("GET", "/static/other.css"),
    ]


# -- authentication -------------------------------------------------------------------------


async def test_every_route_refuses_a_request_without_the_token(
    anonymous: httpx.AsyncClient, archive: Archive, pool: asyncpg.Pool
) -> None:
    for method, path in _routes(archive, await _media_id(pool, archive.image_event)):
        plain = await anonymous.request(method, path)
        assert plain.status_code == 401, (method, path)
        assert plain.headers["www-authenticate"].startswith("Bearer")
        assert "crag" not in plain.text
        wrong = await anonymous.request(method, path, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code in (401, 429), (method, path)
        if method == "GET":
            page = await anonymous.get(path, headers={"Accept": "text/html"})
            assert (page.status_code, page.headers["location"]) == (303, "/login"), path


async def test_a_forged_or_stale_cookie_is_refused(anonymous: httpx.AsyncClient) -> None:
    for value in ("", "x", TOKEN, "0" * 64):
        response = await anonymous.get("/", headers={"Cookie": f"archiver_viewer={value}"})
        assert response.status_code == 401, value


async def test_login_by_link_sets_a_strict_http_only_cookie_that_opens_the_pages(
    anonymous: httpx.AsyncClient,
) -> None:
    response = await anonymous.get(f"/login?token={TOKEN}")
    assert response.status_code == 303
    assert response.headers["location"] == "/"
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie.replace("Strict", "strict")
    assert "Secure" not in cookie  # plain http: a Secure cookie would never come back
    assert TOKEN not in cookie  # the cookie proves the login without carrying the token
    anonymous.cookies.update(response.cookies)
    assert (await anonymous.get("/")).status_code == 200
    out = await anonymous.post("/logout")
    assert out.status_code == 303
    anonymous.cookies.clear()
    anonymous.cookies.update(out.cookies)
    assert (await anonymous.get("/")).status_code == 401


async def test_login_behind_tls_sets_a_secure_cookie(pool: asyncpg.Pool, archive: Archive) -> None:
    transport = httpx.ASGITransport(app=_app(pool, archive))
    async with httpx.AsyncClient(transport=transport, base_url="https://viewer") as c:
        response = await c.post("/login", data={"token": TOKEN})
    assert response.status_code == 303
    assert "Secure" in response.headers["set-cookie"]


async def test_failed_logins_are_rate_limited(anonymous: httpx.AsyncClient) -> None:
    codes = [
        (await anonymous.post("/login", data={"token": f"wrong-{i}"})).status_code
        for i in range(12)
    ]
    assert codes[:10] == [401] * 10
    assert codes[10:] == [429, 429]
    # Even the right token waits out the window: a guesser cannot tell it apart.
    right = await anonymous.post("/login", data={"token": TOKEN})
    assert right.status_code == 429


async def test_every_response_carries_the_security_headers(
    client: httpx.AsyncClient, anonymous: httpx.AsyncClient, archive: Archive
) -> None:
    for response in (
        await client.get("/"),
        await client.get(f"/chat?room={archive.group_room}"),
        await client.get("/chat?room=!nope:example.org"),
        await anonymous.get("/"),
        await anonymous.get("/login"),
    ):
        csp = response.headers["content-security-policy"]
        assert "default-src 'self'" in csp
        assert "script-src 'self'" in csp
        assert "unsafe-inline" not in csp
        assert response.headers["x-content-type-options"] == "nosniff"


# -- pages ----------------------------------------------------------------------------------


async def test_the_chat_list_shows_every_room_with_its_count(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    page = (await client.get("/")).text
    counts = await pool.fetch("SELECT room_id, count(*) AS n FROM messages GROUP BY room_id")
    assert len(counts) == 3
    for row in counts:
        assert f"{row['n']} message" in page
    stats = {r["room_id"]: r["message_count"] for r in await pool.fetch("TABLE room_stats")}
    assert stats == {r["room_id"]: r["n"] for r in counts}


async def test_a_chat_shows_edits_reactions_replies_threads_deletions_and_media(
    client: httpx.AsyncClient, archive: Archive
) -> None:
    page = (await client.get(f"/chat?room={archive.group_room}")).text
    # The edit history, oldest first, with the current text shown.
    assert "edited 2 times" in page
    history = page[page.index('<details class="edits">') :]
    history = history[: history.index("</details>")]
    assert re.findall(r"on (\w+)\? Meet at the café at (\d)", history) == [
        ("Saturday", "9"),
        ("Saturday", "8"),
        ("Sunday", "8"),
    ]
    # Reactions counted per emoji.
    assert re.search(r'<span class="emoji">👍</span> <span class="n">2</span>', page)
    # The deleted message is shown as deleted, with what it said.
    assert 'class="flag del"' in page
    assert "my PIN is 4242" in page
    # A reply quotes its target; a thread reply links its thread.
    assert 'class="reply"' in page
    assert "in a thread" in page
    # Media: the image inline, the SVG only as a download.
    assert re.search(r'<img src="/media/\d+" alt="cat.png"', page)
    assert re.search(r'href="/media/\d+\?download=1" download', page)


async def test_hostile_html_and_file_names_arrive_as_text(
    client: httpx.AsyncClient, archive: Archive
) -> None:
    page = (await client.get(f"/chat?room={archive.group_room}")).text
    assert "<b>topo</b>" in page
    assert "<i>bring chalk</i>" in page
    assert "<script" not in page
    assert "onerror" not in page.replace("onerror=alert(1)&gt;", "")  # only escaped text
    assert "javascript:" not in page
    assert "&#34;&gt;&lt;img src=x onerror=alert(1)&gt;.svg" in page  # the file name, escaped


async def test_paging_back_and_forth_visits_every_message_once_even_with_equal_times(
    pool: asyncpg.Pool, archive: Archive
) -> None:
    room = "!ties:example.org"
    base = datetime(2024, 3, 1, 12, tzinfo=UTC)
    rows = [
        (f"$tie{i:03d}", room, base + timedelta(days=i // 10), f"message {i}") for i in range(47)
    ]
    await pool.executemany(
        'INSERT INTO messages (event_id, room_id, "timestamp", message_type, content, body)'
        " VALUES ($1, $2, $3, 'm.room.message', jsonb_build_object('msgtype', 'm.text',"
        " 'body', $4::text), $4)",
        rows,
    )
    expected = [r[0] for r in sorted(rows, key=lambda r: (r[2], r[0]))]
    transport = httpx.ASGITransport(app=_app(pool, archive, page_size=10))
    async with httpx.AsyncClient(
        transport=transport, base_url="http://v", headers={"Authorization": f"Bearer {TOKEN}"}
    ) as c:
        seen_back: list[str] = []
        url = f"/chat?room={room}"
        while url:
            page = (await c.get(url)).text
            ids = re.findall(r"message (\d+)</div>", page)
            seen_back = [f"$tie{int(i):03d}" for i in ids] + seen_back
            older = re.search(r'class="older" href="([^"]+)"', page)
            url = older.group(1).replace("&amp;", "&") if older else ""
        assert seen_back == expected
        seen_forward: list[str] = []
        url = f"/chat?room={room}&date=2024-03-01"
        while url:
            page = (await c.get(url)).text
            ids = re.findall(r"message (\d+)</div>", page)
            seen_forward += [f"$tie{int(i):03d}" for i in ids]
            newer = re.search(r'class="newer" href="([^"]+)"', page)
            url = newer.group(1).replace("&amp;", "&") if newer else ""
        assert seen_forward == expected
        # Jump to a date: the page starts at that day's first message.
        page = (await c.get(f"/chat?room={room}&date=2024-03-03")).text
        first = re.findall(r"message (\d+)</div>", page)[0]
        assert first == "20"


async def test_search_folds_accents_and_takes_phrases_prefixes_and_negations(
    client: httpx.AsyncClient, archive: Archive
) -> None:
    async def hits(q: str, room: str | None = None) -> str:
        params = {"q": q} | ({"room": room} if room else {})
        return (await client.get("/search", params=params)).text

    assert "<mark>café</mark>" in await hits("cafe")
    assert "the <mark>70</mark> <mark>m</mark> <mark>rope</mark>" in await hits('"70 m rope"')
    assert "No messages match." in await hits('"rope 70"')  # a phrase keeps its order
    assert "<mark>Quickdraws</mark>" in await hits("quickd*")
    assert "No messages match." in await hits("quickdraws -quickdraws")
    assert "<mark>PIN</mark>" in await hits("pin")  # a deleted message is still found
    assert "deleted" in await hits("pin")
    assert "No messages match." in await hits("cafe", room="!other:example.org")
    assert "<mark>café</mark>" in await hits("cafe", room=archive.group_room)


async def test_a_permalink_opens_the_chat_at_the_message(
    client: httpx.AsyncClient, archive: Archive
) -> None:
    target = archive.sent[-3].event_id
    response = await client.get("/m", params={"event": target})
    assert response.status_code == 303
    location = response.headers["location"]
    assert location.startswith("/chat?")
    assert "#m-" in location
    page = (await client.get(location.split("#")[0])).text
    anchor = location.split("#")[1]
    assert re.search(rf'<article class="msg[^"]* target[^"]*" id="{anchor}"', page)
    assert page.count(" target") == 1
    assert (await client.get("/m", params={"event": "$missing"})).status_code == 404


async def test_a_thread_page_shows_the_root_and_its_replies(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    root = await pool.fetchval("SELECT event_id FROM messages WHERE body LIKE 'Gear list%'")
    page = (await client.get("/thread", params={"root": root})).text
    assert page.index("Gear list thread") < page.index("70 m rope") < page.index("Quickdraws")


# -- media ----------------------------------------------------------------------------------


async def test_media_is_served_by_archive_id_with_its_stored_bytes(
    client: httpx.AsyncClient, pool: asyncpg.Pool, archive: Archive
) -> None:
    media_id = await _media_id(pool, archive.image_event)
    sha = await pool.fetchval("SELECT sha256 FROM media WHERE id = $1", media_id)
    response = await client.get(f"/media/{media_id}")
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert response.headers["content-disposition"].startswith("inline")
    assert hashlib.sha256(response.content).hexdigest() == sha
    download = await client.get(f"/media/{media_id}?download=1")
    assert download.headers["content-disposition"].startswith("attachment")


async def test_svg_and_unknown_types_are_only_ever_downloads(
    client: httpx.AsyncClient, pool: asyncpg.Pool, archive: Archive
) -> None:
    response = await client.get(f"/media/{await _media_id(pool, archive.svg_event)}")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/octet-stream"
    disposition = response.headers["content-disposition"]
    assert disposition.startswith("attachment;")
    assert "<" not in disposition
    assert '"><' not in disposition
    assert "sandbox" in response.headers["content-security-policy"]


@pytest.mark.parametrize(
    "path",
    [
        "/media/0",
        "/media/-1",
        "/media/99999999999",
        "/media/abc",
        "/media/1/../../etc/passwd",
        "/media/%2e%2e/%2e%2e/etc/passwd",
        "/media/mxc?url=../../etc/passwd",
        "/media/mxc?url=mxc://example.org/../../x",
        "/static/../viewer/app.py",
        "/static/%2e%2e/app.py",
    ],
)
async def test_no_request_path_reaches_a_file(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path)
    assert response.status_code == 404, response.text
    assert "import" not in response.text
    assert "root:" not in response.text


async def test_a_tampered_storage_path_is_refused(
    client: httpx.AsyncClient, pool: asyncpg.Pool, archive: Archive
) -> None:
    media_id = await _media_id(pool, archive.image_event)
    original = await pool.fetchval("SELECT storage_path FROM media WHERE id = $1", media_id)
    try:
        for bad in ("../../../../etc/passwd", "/etc/passwd", original + "/../x"):
            await pool.execute("UPDATE media SET storage_path = $2 WHERE id = $1", media_id, bad)
            assert (await client.get(f"/media/{media_id}")).status_code == 404, bad
    finally:
        await pool.execute("UPDATE media SET storage_path = $2 WHERE id = $1", media_id, original)


async def test_bad_ids_get_clear_errors_not_server_errors(
    client: httpx.AsyncClient, archive: Archive
) -> None:
    assert (await client.get("/chat")).status_code == 400
    assert (await client.get("/chat?room=" + "x" * 300)).status_code == 400
    assert (await client.get("/chat?room=!nope:example.org")).status_code == 404
    room = archive.group_room
    assert (await client.get(f"/chat?room={room}&before=$nope")).status_code == 404
    assert (await client.get(f"/chat?room={room}&date=yesterday")).status_code == 400
    other = archive.sent[0]
    if other.chat.room_id != room:  # a cursor from another chat is not this chat's
        r = await client.get(f"/chat?room={room}&before={other.event_id}")
        assert r.status_code == 404


# -- the statistics the chat list reads ---------------------------------------------------


async def test_room_stats_count_inserts_once_and_survive_the_migration(
    archive_template: str,
) -> None:
    name = pg.unique_name("t_stats")
    url = await pg.create_database(name)
    conn = await asyncpg.connect(url)
    try:
        files = migrate.migration_files()
        before = [p for p in files if p.stem < "0005"]
        await conn.execute(
            "CREATE TABLE archive_schema_migrations (version TEXT PRIMARY KEY,"
            " applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        )
        for path in before:
            await conn.execute(path.read_text())
            await conn.execute("INSERT INTO archive_schema_migrations VALUES ($1)", path.stem)
        insert = (
            'INSERT INTO messages (event_id, room_id, room_name, "timestamp", body)'
            " SELECT '$' || $1 || g, $1, $1 || ' chat', now() - g * interval '1 minute', 'x'"
            " FROM generate_series(1, $2) g ON CONFLICT (event_id) DO UPDATE SET body = 'y'"
        )
        await conn.execute(insert, "!a", 30)
        await conn.execute(insert, "!b", 5)
        assert "0005_viewer" in await migrate.migrate(conn)
        stats = {r["room_id"]: r["message_count"] for r in await conn.fetch("TABLE room_stats")}
        assert stats == {"!a": 30, "!b": 5}
        await conn.execute(insert, "!a", 40)  # 30 again (updates) and 10 new
        await conn.execute(insert, "!c", 1)
        stats = {r["room_id"]: r["message_count"] for r in await conn.fetch("TABLE room_stats")}
        assert stats == {"!a": 40, "!b": 5, "!c": 1}
        assert await conn.fetchval("SELECT room_name FROM room_stats WHERE room_id = '!c'") == (
            "!c chat"
        )
    finally:
        await conn.close()
        await pg.drop_database(name)


# -- least privilege -------------------------------------------------------------------------


async def test_the_viewer_role_from_grants_sql_reads_every_page_and_writes_nothing(
    archive: Archive,
) -> None:
    name = f"viewer_{uuid.uuid4().hex[:8]}"
    psql_file(archive.url, pg.REPO / "sql" / "grants.sql", "target=viewer", f"role={name}")
    parts = urlsplit(archive.url)
    role_url = urlunsplit(parts._replace(netloc=f"{name}@{parts.hostname}:{parts.port or 5432}"))
    try:
        role_pool = await connect.create_pool(
            role_url, application_name="test-viewer", max_size=2, read_only=True
        )
        try:
            transport = httpx.ASGITransport(app=_app(role_pool, archive))
            async with httpx.AsyncClient(
                transport=transport,
                base_url="http://v",
                headers={"Authorization": f"Bearer {TOKEN}"},
            ) as c:
                for path in ("/", f"/chat?room={archive.group_room}", "/search?q=cafe"):
                    assert (await c.get(path)).status_code == 200, path
                media_id = await role_pool.fetchval("SELECT min(id) FROM media")
                assert (await c.get(f"/media/{media_id}")).status_code == 200
        finally:
            await role_pool.close()
        conn = await asyncpg.connect(role_url)
        try:
            for statement in (
                "UPDATE messages SET body = 'forged'",
                "INSERT INTO room_stats (room_id) VALUES ('!x')",
                "DELETE FROM media",
            ):
                with pytest.raises(asyncpg.InsufficientPrivilegeError):
                    await conn.execute(statement)
        finally:
            await conn.close()
    finally:
        owner = await asyncpg.connect(archive.url)
        try:
            await owner.execute(f'DROP OWNED BY "{name}"')
        finally:
            await owner.close()
        await pg.admin_execute(f'DROP ROLE IF EXISTS "{name}"')
