"""Retry decisions for Supabase's HTTP APIs (PostgREST, Storage, TUS) and the loop that applies
them.

:func:`classify` is pure: an HTTP status and body in, a verdict out. :class:`Caller` runs one
request with jittered exponential backoff for a short budget, honouring ``Retry-After`` for every
request through a shared gate (a 429 slows every worker down, not just the one that saw it), and
then gives up with ``SinkUnavailable``: the pipeline holds its place and retries forever with its
own backoff, so an outage of any length loses nothing and each attempt stays short enough for a
clean shutdown.
"""

from __future__ import annotations

import asyncio
import enum
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx

from listener.core import backoff, errors

logger = logging.getLogger(__name__)

T = TypeVar("T")
BODY_CHARS = 2000

# HTTP statuses a later attempt may get past: timeouts, throttling, gateways and the server side
# of PostgREST's table (08* 503, 53* 503, 40* 500, 57* 500) and Storage's (544 database timeout).
_RETRY_STATUSES = {408, 423, 425, 429, 500, 502, 503, 504, 520, 521, 522, 523, 524, 544}
# PostgreSQL error classes behind a PostgREST 500 that depend on the data, not on the moment:
# triggered action (09), external routine (38, 39), too complex (54).
_DATA_CLASSES = ("09", "38", "39", "54")
_AUTH_STORAGE_CODES = {"InvalidJWT", "AccessDenied", "InvalidSignature", "ExpiredToken"}


class Verdict(enum.Enum):
    OK = "ok"
    RETRY = "retry"
    REJECT = "reject"
    AUTH = "auth"
    TOO_LARGE = "too_large"


def _body_fields(body: str) -> dict[str, Any]:
    try:
        parsed = json.loads(body)
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def classify(status: int, body: str = "") -> Verdict:
    """What to do about a response. Storage reports most errors as HTTP 400 with the real status
    in the body's ``statusCode`` (storage-api's StorageBackendError.userStatusCode), so that is
    read too."""
    if 200 <= status < 300:
        return Verdict.OK
    fields = _body_fields(body)
    inner = str(fields.get("statusCode", ""))
    code = str(fields.get("code", ""))
    if status in (401, 403) or inner in ("401", "403") or code in _AUTH_STORAGE_CODES:
        return Verdict.AUTH
    if status == 413 or inner == "413":
        return Verdict.TOO_LARGE
    if status == 500 and code[:2] in _DATA_CLASSES:
        return Verdict.REJECT
    if status in _RETRY_STATUSES or status >= 500:
        return Verdict.RETRY
    if inner.isdigit() and (int(inner) in _RETRY_STATUSES or int(inner) >= 500):
        return Verdict.RETRY
    return Verdict.REJECT


def response_of(exc: BaseException) -> httpx.Response | None:
    """The HTTP response behind an error: storage3 raises its own StorageApiError from the
    httpx.HTTPStatusError (directly, or from a KeyError raised while parsing the body)."""
    seen: set[int] = set()
    probe: BaseException | None = exc
    while probe is not None and id(probe) not in seen:
        seen.add(id(probe))
        if isinstance(probe, httpx.HTTPStatusError):
            return probe.response
        probe = probe.__cause__ or probe.__context__
    return None


def describe(response: httpx.Response) -> str:
    body = response.text[:BODY_CHARS] if response.content else ""
    return f"HTTP {response.status_code}: {body or response.reason_phrase}"


@dataclass
class Gate:
    """The earliest moment the next request may go (set by ``Retry-After``)."""

    not_before: float = 0.0


class Caller:
    """Runs requests with bounded retries; translates outcomes into our exception tree."""

    def __init__(
        self,
        *,
        budget_s: float,
        max_retry_after_s: float,
        base_s: float = 0.1,
        cap_s: float = 5.0,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._budget_s = budget_s
        self._max_retry_after_s = max_retry_after_s
        self._base_s = base_s
        self._cap_s = cap_s
        self._rng = rng or random.Random()
        self._clock = clock
        self._sleep = sleep
        self.gate = Gate()
        self.retries = 0

    async def call(self, what: str, action: Callable[[], Awaitable[T]]) -> T:
        """``action`` returns on success and raises on failure (an httpx transport error, or an
        error chained to an ``httpx.HTTPStatusError``)."""
        started = self._clock()
        attempt = 0
        while True:
            await self._wait_gate()
            try:
                return await action()
            except Exception as exc:  # sorted out by _verdict: retry, translate or re-raise
                reason, retry_after_s = self._verdict(what, exc)
            delay = retry_after_s if retry_after_s is not None else self._backoff(attempt)
            if retry_after_s is not None:
                self.gate.not_before = max(self.gate.not_before, self._clock() + retry_after_s)
            if self._clock() - started + delay > self._budget_s:
                raise errors.SinkUnavailable(f"{what} failed: {reason}") from None
            self.retries += 1
            attempt += 1
            logger.debug(
                "%s: %s; retrying in %.2f s",
                what,
                reason,
                delay,
                extra={"action": "supabase_retry", "attempt": attempt},
            )
            await self._sleep(delay)

    def _backoff(self, attempt: int) -> float:
        return backoff.delay_s(attempt, base_s=self._base_s, cap_s=self._cap_s, rng=self._rng)

    async def _wait_gate(self) -> None:
        wait_s = self.gate.not_before - self._clock()
        if wait_s > 0:
            await self._sleep(wait_s)

    def _verdict(self, what: str, exc: Exception) -> tuple[str, float | None]:
        """(reason, Retry-After seconds) for a retryable failure; raise for the others."""
        if isinstance(exc, errors.ArchiverError):
            raise exc
        if isinstance(exc, httpx.TransportError):  # timeouts, refused and dropped connections
            return f"{type(exc).__name__}: {exc or 'connection failed'}", None
        response = response_of(exc)
        if response is None:
            raise exc
        verdict = classify(response.status_code, response.text)
        if verdict is Verdict.AUTH:
            raise errors.SinkAuthError(
                f"{what}: Supabase refused the key ({describe(response)}); "
                "check SUPABASE_KEY (the service_role key) and SUPABASE_URL"
            ) from None
        if verdict is Verdict.TOO_LARGE:
            raise errors.PayloadTooLarge(f"{what}: {describe(response)}") from None
        if verdict is Verdict.REJECT:
            raise errors.RowRejected(f"{what} refused: {describe(response)}") from None
        header = response.headers.get("retry-after")
        return describe(response), backoff.retry_after_s(header, cap_s=self._max_retry_after_s)
