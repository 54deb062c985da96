"""``archiver-db serve``: the pages. Server-rendered (Starlette + Jinja2, autoescape on), read
only, every page bounded by a page size whatever the archive holds.
"""

from __future__ import annotations

import logging
import time
from datetime import date, datetime, tzinfo
from datetime import time as day_time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

import asyncpg
import jinja2
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from listener.viewer import auth, guard, media_files, reader, search_query, views

logger = logging.getLogger(__name__)

HERE = Path(__file__).parent
MAX_ID_CHARS = 255  # the spec's limit on room and event IDs
MAX_LOGIN_BODY = 4096
SEARCH_PAGE = 50


class ViewerLinks:
    """The viewer's routes (views.Links)."""

    def media(self, item: views.MediaView) -> str | None:
        return f"/media/{item.media_id}"

    def download(self, item: views.MediaView) -> str | None:
        return f"/media/{item.media_id}?download=1"

    def message(self, event_id: str, at: datetime | None) -> str | None:
        return "/m?" + urlencode({"event": event_id})

    def thread(self, root: str, at: datetime | None) -> str | None:
        return "/thread?" + urlencode({"root": root})


LINKS = ViewerLinks()


def templates() -> Jinja2Templates:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,  # every template, whatever its name
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["anchor"] = views.anchor
    env.filters["color"] = views.color_class
    env.globals["qs"] = lambda **params: urlencode({k: v for k, v in params.items() if v})
    env.globals["links"] = LINKS
    return Jinja2Templates(env=env)


def _param(request: Request, name: str) -> str | None:
    value = request.query_params.get(name)
    if value is None or value == "":
        return None
    if len(value) > MAX_ID_CHARS or "\x00" in value:
        raise HTTPException(400, f"{name} is not a Matrix ID")
    return value


class Pages:
    def __init__(
        self,
        archive: reader.ArchiveReader,
        media: media_files.MediaFiles,
        *,
        token: auth.TokenAuth,
        limiter: auth.FailureLimiter,
        zone: tzinfo,
        page_size: int,
    ) -> None:
        self.archive = archive
        self.media = media
        self.token = token
        self.limiter = limiter
        self.zone = zone
        self.page_size = page_size
        self.templates = templates()

    def render(self, request: Request, name: str, status: int = 200, **context: Any) -> Response:
        return self.templates.TemplateResponse(request, name, context, status_code=status)

    # -- chats ---------------------------------------------------------------------------
    async def chats(self, request: Request) -> Response:
        rooms = await self.archive.rooms()
        return self.render(request, "chats.html", rooms=rooms, zone=self.zone)

    async def chat(self, request: Request) -> Response:
        room_id = _param(request, "room")
        if room_id is None:
            raise HTTPException(400, "which chat? (?room=…)")
        room = await self.archive.room(room_id)
        if room is None:
            raise HTTPException(404, "no such chat in the archive")
        rows, older, newer, target = await self._page(request, room_id)
        messages = await self._assemble(rows)
        return self.render(
            request,
            "chat.html",
            room=room,
            messages=messages,
            older=older,
            newer=newer,
            target=target,
            zone=self.zone,
        )

    async def _cursor(self, room_id: str | None, event_id: str) -> dict[str, Any]:
        found = (await self.archive.messages([event_id])).get(event_id)
        if found is None or (room_id is not None and found["room_id"] != room_id):
            raise HTTPException(404, "no such message in this chat")
        return found

    async def _page(
        self, request: Request, room_id: str
    ) -> tuple[list[dict[str, Any]], str | None, str | None, str | None]:
        """(rows oldest first, the first row's ID if older ones exist, the last row's ID if
        newer ones exist, the message asked for)."""
        n = self.page_size
        before, after, at = (_param(request, k) for k in ("before", "after", "at"))
        day = request.query_params.get("date")
        target = None
        if before is not None:
            c = reader.Cursor.of(await self._cursor(room_id, before))
            rows = await self.archive.before(room_id, c, n)
        elif after is not None:
            c = reader.Cursor.of(await self._cursor(room_id, after))
            rows = await self.archive.after(room_id, c, n)
        elif at is not None:
            c = reader.Cursor.of(await self._cursor(room_id, at))
            target = at
            rows = await self.archive.before(room_id, c, n // 2)
            rows += await self.archive.after(room_id, c, n - n // 2, inclusive=True)
        elif day:
            rows = await self.archive.after(
                room_id, reader.Cursor.start_of(self._start_of(day)), n, inclusive=True
            )
            if not rows:  # after the last message: show the newest page
                rows = await self.archive.before(room_id, reader.NEWEST, n)
        else:
            rows = await self.archive.before(room_id, reader.NEWEST, n)
        if not rows:
            return rows, None, None, target
        first, last = rows[0], rows[-1]
        has_older = bool(await self.archive.before(room_id, reader.Cursor.of(first), 1))
        has_newer = bool(await self.archive.after(room_id, reader.Cursor.of(last), 1))
        return (
            rows,
            first["event_id"] if has_older else None,
            last["event_id"] if has_newer else None,
            target,
        )

    def _start_of(self, text: str) -> datetime:
        try:
            day = date.fromisoformat(text)
        except ValueError:
            raise HTTPException(400, "date must be YYYY-MM-DD") from None
        return datetime.combine(day, day_time.min, tzinfo=self.zone)

    async def _assemble(self, rows: list[dict[str, Any]]) -> list[views.MessageView]:
        return await self.archive.message_views(rows, zone=self.zone)

    async def thread(self, request: Request) -> Response:
        root = _param(request, "root")
        if root is None:
            raise HTTPException(400, "which thread? (?root=…)")
        root_row = await self._cursor(None, root)
        after = _param(request, "after")
        cursor = reader.OLDEST
        if after is not None:
            cursor = reader.Cursor.of(await self._cursor(root_row["room_id"], after))
        rows = await self.archive.thread(root, cursor, self.page_size + 1)
        more = len(rows) > self.page_size
        rows = rows[: self.page_size]
        room = await self.archive.room(root_row["room_id"])
        return self.render(
            request,
            "thread.html",
            room=room,
            root=root,
            messages=await self._assemble(rows),
            newer=rows[-1]["event_id"] if more and rows else None,
            zone=self.zone,
        )

    async def permalink(self, request: Request) -> Response:
        event_id = _param(request, "event")
        if event_id is None:
            raise HTTPException(400, "which message? (?event=…)")
        found = await self._cursor(None, event_id)
        query = urlencode({"room": found["room_id"], "at": event_id})
        return RedirectResponse(f"/chat?{query}#{views.anchor(event_id)}", status_code=303)

    # -- search --------------------------------------------------------------------------
    async def search(self, request: Request) -> Response:
        text = request.query_params.get("q", "")
        room_id = _param(request, "room")
        query = search_query.parse(text)
        results: list[dict[str, Any]] = []
        more = None
        if query.tsquery:
            cursor = reader.NEWEST
            before = _param(request, "before")
            if before is not None:
                cursor = reader.Cursor.of(await self._cursor(room_id, before))
            rows = await self.archive.search(query.tsquery, room_id, cursor, SEARCH_PAGE + 1)
            for row in rows[:SEARCH_PAGE]:
                name = views.display_name(row["sender"], row["sender_display_name"])
                results.append(
                    {
                        "event_id": row["event_id"],
                        "room_id": row["room_id"],
                        "room_name": row["room_name"] or row["room_id"],
                        "sender_name": name,
                        "initials": views.initials(name),
                        "color": views.color_class(row["sender"]),
                        "when": row["timestamp"].astimezone(self.zone).strftime("%d %b %Y %H:%M"),
                        "deleted": row["deleted_at"] is not None,
                        "excerpt": views.mark_excerpt(row["excerpt"]),
                    }
                )
            if len(rows) > SEARCH_PAGE:
                more = rows[SEARCH_PAGE - 1]["event_id"]
        room = await self.archive.room(room_id) if room_id else None
        return self.render(
            request,
            "search.html",
            q=text,
            room=room,
            room_id=room_id,
            results=results,
            more=more,
            searched=bool(query.tsquery),
        )

    # -- media ---------------------------------------------------------------------------
    async def media_by_id(self, request: Request) -> Response:
        media_id = request.path_params["media_id"]
        if not 0 < media_id < 2**63:
            raise HTTPException(404, "no such media")
        file = await self.archive.media_file(media_id)
        if file is None:
            raise HTTPException(404, "no such media in the archive")
        return await self.media.response(file, download="download" in request.query_params)

    async def media_by_mxc(self, request: Request) -> Response:
        url = request.query_params.get("url", "")
        if not url or len(url) > 600:
            raise HTTPException(404, "no such media")
        file = await self.archive.media_by_mxc(url)
        if file is None:
            raise HTTPException(404, "no such media in the archive")
        return await self.media.response(file, download=False)

    # -- login ---------------------------------------------------------------------------
    async def login(self, request: Request) -> Response:
        client = guard.client_of(request.scope)
        if request.method == "GET":
            token = request.query_params.get("token")
            if token is None:
                return self.render(request, "login.html", error=None)
        else:
            body = await _bounded_body(request)
            token = (parse_qs(body.decode("utf-8", "replace")).get("token") or [""])[0]
        verdict = self.limiter.check(client)
        if not verdict.allowed:
            return self.render(
                request,
                "login.html",
                status=429,
                error=f"Too many failed attempts: try again in {verdict.retry_after_s} s.",
            )
        if not self.token.token_matches(token.strip()):
            self.limiter.failed(client)
            return self.render(request, "login.html", status=401, error="That token is not valid.")
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(
            auth.COOKIE_NAME,
            self.token.session_value(),
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            path="/",
        )
        return response

    async def logout(self, request: Request) -> Response:
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(auth.COOKIE_NAME, path="/")
        return response


async def _bounded_body(request: Request) -> bytes:
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_LOGIN_BODY:
            raise HTTPException(413, "login form too large")
    return body


def build(
    archive: reader.ArchiveReader,
    media: media_files.MediaFiles,
    *,
    token: str,
    zone: tzinfo,
    page_size: int = 100,
    clock: Any = time.monotonic,
) -> Starlette:
    """The viewer application over ``archive`` (reads) and ``media`` (bytes)."""
    token_auth = auth.TokenAuth(token)
    limiter = auth.FailureLimiter(clock=clock)
    pages = Pages(archive, media, token=token_auth, limiter=limiter, zone=zone, page_size=page_size)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return pages.render(request, "error.html", status=exc.status_code, message=exc.detail)

    async def database_error(request: Request, exc: Exception) -> Response:
        logger.warning(
            "archive database unavailable: %s",
            type(exc).__name__,
            extra={"action": "viewer_database_unavailable"},
        )
        return pages.render(
            request, "error.html", status=503, message="The archive database is unavailable."
        )

    app = Starlette(
        routes=[
            Route("/", pages.chats),
            Route("/chat", pages.chat),
            Route("/thread", pages.thread),
            Route("/m", pages.permalink),
            Route("/search", pages.search),
            Route("/media/mxc", pages.media_by_mxc),
            Route("/media/{media_id:int}", pages.media_by_id),
            Route("/login", pages.login, methods=["GET", "POST"]),
            Route("/logout", pages.logout, methods=["POST"]),
            Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
        ],
        exception_handlers={
            HTTPException: http_error,
            asyncpg.PostgresConnectionError: database_error,
            asyncpg.InterfaceError: database_error,
            OSError: database_error,
        },
    )
    app.add_middleware(guard.Guard, token=token_auth, limiter=limiter)
    return app
