"""Who may read the archive: the holder of the viewer token. Pure apart from the clock passed in.

A request is let in by ``Authorization: Bearer <token>`` or by the session cookie that a
successful login sets. The cookie holds HMAC-SHA256(token, purpose), not the token: it proves
the login without revealing the token to anything that reads cookies, and changing the token
ends every session. Comparisons are constant-time. Failed attempts are limited per client and
in total, so guessing is bounded even from many addresses.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

COOKIE_NAME = "archiver_viewer"
_PURPOSE = b"archiver-db viewer session v1"
TOKEN_BYTES = 32


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


class TokenAuth:
    def __init__(self, token: str) -> None:
        if len(token) < 16:
            raise ValueError("the viewer token must be at least 16 characters")
        self._token = token.encode("utf-8")
        self._session = hmac.new(self._token, _PURPOSE, hashlib.sha256).hexdigest()

    def token_matches(self, candidate: str) -> bool:
        return hmac.compare_digest(self._token, candidate.encode("utf-8", "surrogatepass"))

    def bearer_matches(self, authorization: str) -> bool:
        scheme, _, value = authorization.partition(" ")
        return scheme.lower() == "bearer" and self.token_matches(value.strip())

    def session_value(self) -> str:
        """The session cookie's value."""
        return self._session

    def session_matches(self, cookie: str) -> bool:
        return hmac.compare_digest(self._session.encode(), cookie.encode("utf-8", "surrogatepass"))


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    retry_after_s: int = 0


class FailureLimiter:
    """At most ``per_client`` failed attempts per client and ``total`` in all within
    ``window_s``; past that, attempts are refused (429) until the window has moved on.
    Remembers at most ``max_clients`` clients (the oldest forgotten first)."""

    def __init__(
        self,
        *,
        clock: Callable[[], float],
        per_client: int = 10,
        total: int = 100,
        window_s: float = 60.0,
        max_clients: int = 10_000,
    ) -> None:
        self._clock = clock
        self._per_client = per_client
        self._total = total
        self._window_s = window_s
        self._max_clients = max_clients
        self._clients: OrderedDict[str, deque[float]] = OrderedDict()
        self._all: deque[float] = deque()

    def _trim(self, times: deque[float], now: float) -> None:
        while times and times[0] <= now - self._window_s:
            times.popleft()

    def check(self, client: str) -> Verdict:
        """May ``client`` try now?"""
        now = self._clock()
        self._trim(self._all, now)
        times = self._clients.get(client)
        if times is not None:
            self._trim(times, now)
        full = [
            q
            for q, cap in ((times, self._per_client), (self._all, self._total))
            if q is not None and len(q) >= cap
        ]
        if not full:
            return Verdict(True)
        wait = max(q[0] + self._window_s - now for q in full)
        return Verdict(False, max(1, int(wait + 0.999)))

    def failed(self, client: str) -> None:
        now = self._clock()
        times = self._clients.pop(client, None) or deque()
        times.append(now)
        self._clients[client] = times  # most recent last
        self._all.append(now)
        while len(self._clients) > self._max_clients:
            self._clients.popitem(last=False)
        self._trim(self._all, now)
