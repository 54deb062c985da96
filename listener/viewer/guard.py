"""The viewer's front door, as ASGI middleware: security headers on every response, and no
request past it without the token (or the session cookie a login set).

Open without a token: the login page and the stylesheet (our own file, no archive data). A
browser asking for a page is sent to the login page; anything else gets 401.
"""

from __future__ import annotations

from http.cookies import SimpleCookie

from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from listener.viewer import auth

PUBLIC_PATHS = frozenset({"/login", "/static/viewer.css"})
SECURITY_HEADERS = {
    # No inline script or style anywhere: what a chat member wrote cannot run even if a bug
    # let it through the sanitiser.
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "media-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}


def client_of(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


def session_cookie(headers: Headers) -> str | None:
    raw = headers.get("cookie")
    if not raw:
        return None
    cookies: SimpleCookie = SimpleCookie()
    try:
        cookies.load(raw)
    except Exception:  # a malformed Cookie header is simply no session
        return None
    morsel = cookies.get(auth.COOKIE_NAME)
    return morsel.value if morsel is not None else None


class Guard:
    def __init__(self, app: ASGIApp, *, token: auth.TokenAuth, limiter: auth.FailureLimiter):
        self._app = app
        self._token = token
        self._limiter = limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
            await send(message)

        response = self._refusal(scope)
        if response is not None:
            await response(scope, receive, send_with_headers)
            return
        await self._app(scope, receive, send_with_headers)

    def _refusal(self, scope: Scope) -> Response | None:
        """None when the request may go on; else the answer it gets."""
        path = scope["path"]
        if path in PUBLIC_PATHS:
            return None
        headers = Headers(scope=scope)
        authorization = headers.get("authorization")
        if authorization is not None:
            client = client_of(scope)
            verdict = self._limiter.check(client)
            if not verdict.allowed:
                return PlainTextResponse(
                    "too many failed attempts\n",
                    status_code=429,
                    headers={"Retry-After": str(verdict.retry_after_s)},
                )
            if self._token.bearer_matches(authorization):
                return None
            self._limiter.failed(client)
            return self._unauthorized()
        cookie = session_cookie(headers)
        if cookie is not None and self._token.session_matches(cookie):
            return None
        if scope["method"] in ("GET", "HEAD") and "text/html" in headers.get("accept", ""):
            return RedirectResponse("/login", status_code=303)
        return self._unauthorized()

    @staticmethod
    def _unauthorized() -> Response:
        return PlainTextResponse(
            "authentication required\n",
            status_code=401,
            headers={"WWW-Authenticate": 'Bearer realm="archiver-db"'},
        )
