"""The connection to a Supabase project: the supabase package's async client on one httpx
client, and the few request shapes the archiver sends through it.

Requests are built by the package (postgrest-py: paths, ``on_conflict``, ``columns``, the
``Prefer`` header, ``apikey`` and ``Authorization: Bearer``) and sent with its own
``RequestConfig.send``; only the outcome is read here, from the raw response, because
postgrest-py's ``execute()`` drops the status code and ``Retry-After`` that the retry decisions
need (and retries GETs on its own, which is switched off so :class:`supabase_http.Caller` alone
decides).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from typing import Any, TypeAlias

import httpx
from postgrest import AsyncSelectRequestBuilder, ReturnMethod
from supabase import AsyncClient, AsyncClientOptions, acreate_client

from listener.core import errors
from listener.sinks.supabase import retry, tus
from listener.sinks.supabase import rows as supabase_rows

Query: TypeAlias = AsyncSelectRequestBuilder
Where = Callable[[Query], Query]
PAGE_ROWS = 1000  # Supabase's default max_rows: a select returns at most this many rows
URL_FILTER_CHARS = 4000


def _all(query: Query) -> Query:
    return query


class SupabaseApi:
    def __init__(
        self,
        url: str,
        key: str,
        *,
        timeout_s: float = 30.0,
        retry_budget_s: float = 10.0,
        max_retry_after_s: float = 60.0,
        max_request_bytes: int = 1_000_000,
        max_connections: int = 16,
        tus_chunk_bytes: int = tus.CHUNK_BYTES,
        rng: random.Random | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self._key = key
        self._timeout_s = timeout_s
        self._max_connections = max_connections
        self.max_request_bytes = max_request_bytes
        self.tus_chunk_bytes = tus_chunk_bytes
        self.caller = retry.Caller(
            budget_s=retry_budget_s, max_retry_after_s=max_retry_after_s, rng=rng
        )
        self._http: httpx.AsyncClient | None = None
        self._client: AsyncClient | None = None

    @property
    def client(self) -> AsyncClient:
        if self._client is None:
            raise errors.SinkError("the Supabase connection is not open")
        return self._client

    @property
    def http(self) -> httpx.AsyncClient:
        if self._http is None:
            raise errors.SinkError("the Supabase connection is not open")
        return self._http

    async def open(self) -> None:
        if self._client is not None:
            return
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(self._timeout_s),
            limits=httpx.Limits(max_connections=self._max_connections),
            follow_redirects=True,
            http2=True,  # as the package's own clients (used when TLS negotiates it)
        )
        options = AsyncClientOptions(
            httpx_client=self._http,
            postgrest_client_retry=False,
            auto_refresh_token=False,
            persist_session=False,
        )
        try:
            self._client = await acreate_client(self.url, self._key, options=options)
        except Exception as exc:  # the package raises SupabaseException for a malformed URL
            await self.close()
            raise errors.ConfigError(f"SUPABASE_URL: {exc}") from None

    async def close(self) -> None:
        if self._http is not None:
            await self._http.aclose()
        self._http = None
        self._client = None

    def auth_headers(self) -> dict[str, str]:
        return dict(self.client.options.headers)

    def tus(self) -> tus.TusClient:
        return tus.TusClient(
            self.http,
            endpoint=f"{self.client.storage_url}upload/resumable",
            headers=self.auth_headers(),
            caller=self.caller,
            chunk_bytes=self.tus_chunk_bytes,
        )

    # -- PostgREST ----------------------------------------------------------------------------

    async def _send(self, what: str, query: Query) -> Any:
        async def attempt() -> Any:
            response = await query.request.send(httpx.Headers())
            response.raise_for_status()
            return json.loads(response.content) if response.content else None

        return await self.caller.call(what, attempt)

    async def upsert(
        self,
        table: str,
        rows: Sequence[supabase_rows.Row],
        *,
        on_conflict: str,
        ignore_duplicates: bool = False,
        returning: str | None = None,
    ) -> list[supabase_rows.Row]:
        """One request per ``max_request_bytes`` of rows (halved again if the server still
        finds one too large); returns the ``returning`` columns of the rows written."""
        written: list[supabase_rows.Row] = []
        for chunk in supabase_rows.split_by_bytes(rows, max_bytes=self.max_request_bytes):
            written += await self._upsert_chunk(
                table, chunk, on_conflict, ignore_duplicates, returning
            )
        return written

    async def _upsert_chunk(
        self,
        table: str,
        rows: list[supabase_rows.Row],
        on_conflict: str,
        ignore_duplicates: bool,
        returning: str | None,
    ) -> list[supabase_rows.Row]:
        query = self.client.table(table).upsert(
            rows,
            on_conflict=on_conflict,
            ignore_duplicates=ignore_duplicates,
            returning=ReturnMethod.minimal,
        )
        if returning is not None:
            query = query.select(returning)
        try:
            result = await self._send(f"upsert into {table}", query)
        except errors.PayloadTooLarge:
            if len(rows) == 1:
                raise
            middle = len(rows) // 2
            first = await self._upsert_chunk(
                table, rows[:middle], on_conflict, ignore_duplicates, returning
            )
            second = await self._upsert_chunk(
                table, rows[middle:], on_conflict, ignore_duplicates, returning
            )
            return first + second
        return list(result or [])

    async def update(
        self, table: str, values: supabase_rows.Row, where: Where, *, returning: str | None = None
    ) -> list[supabase_rows.Row]:
        query = where(self.client.table(table).update(values, returning=ReturnMethod.minimal))
        if returning is not None:
            query = query.select(returning)
        return list(await self._send(f"update of {table}", query) or [])

    async def select(self, table: str, columns: str, where: Where = _all) -> list[Any]:
        query = where(self.client.table(table).select(columns))
        return list(await self._send(f"select from {table}", query) or [])

    async def select_in(
        self,
        table: str,
        columns: str,
        column: str,
        values: Sequence[str],
        where: Where = _all,
    ) -> list[Any]:
        """``column IN values``, in as many requests as the URL length needs."""
        rows: list[Any] = []
        for chunk in supabase_rows.split_for_url(values, max_chars=URL_FILTER_CHARS):

            def where_in(query: Query, chunk: list[str] = chunk) -> Query:
                return where(query.in_(column, chunk))

            rows += await self.select(table, columns, where_in)
        return rows

    async def select_keyset(
        self, table: str, columns: str, key: str, where: Where = _all
    ) -> list[Any]:
        """Every matching row, a page at a time by ``key`` (unique), so a ``max_rows`` cap on the
        server cannot silently cut the result short."""
        rows: list[Any] = []
        last: str | None = None
        while True:

            def page(query: Query, after: str | None = last) -> Query:
                query = where(query).order(key).limit(PAGE_ROWS)
                return query.gt(key, after) if after is not None else query

            batch = await self.select(table, columns, page)
            if not batch:
                return rows
            rows += batch
            last = str(batch[-1][key])
