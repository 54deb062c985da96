"""The Supabase stub: one port, Supabase's URL layout (``/rest/v1``, ``/storage/v1``), the API
gateway's key check in front, PostgREST and Storage behind it.

Gateway (Kong's key-auth as Supabase configures it; supabase/supabase docker/volumes/api/
kong.yml): no ``apikey`` header → 401 ``{"message":"No API key found in request"}``, an unknown
one → 401 ``{"message":"Invalid API key"}``. Behind it, PostgREST checks the bearer token: a bad
signature is 401 PGRST301; Storage answers an invalid JWT as HTTP 400 with code InvalidJWT.
The stub has one key (the service role's) and accepts only that one in both headers.
"""

from __future__ import annotations

import json
from pathlib import Path

import asyncpg

from tests.supabase_stub import faults, httpserver, rest, storage
from tests.supabase_stub.httpserver import Request, Response

DEFAULT_KEY = "stub-service-role-key"


def _gateway_error(message: str) -> Response:
    return Response(
        401, json.dumps({"message": message}).encode(), {"content-type": "application/json"}
    )


class SupabaseStub:
    def __init__(
        self,
        db_url: str,
        root: Path,
        *,
        key: str = DEFAULT_KEY,
        port: int = 0,
        max_rows: int = 1000,
        max_body_bytes: int | None = None,
    ) -> None:
        self.db_url = db_url
        self.key = key
        self.faults = faults.Faults()
        self.storage = storage.Storage(root)
        self.max_body_bytes = max_body_bytes
        self._max_rows = max_rows
        self._pool: asyncpg.Pool | None = None
        self.rest: rest.Rest | None = None
        self.http = httpserver.HttpServer(
            self._handle, faults=self.faults, partial=self.storage.partial, port=port
        )
        self.log: list[tuple[str, str, int]] = []  # (method, path, status)

    @property
    def url(self) -> str:
        return self.http.url

    async def start(self) -> None:
        self._pool = await asyncpg.create_pool(self.db_url, min_size=1, max_size=8)
        self.rest = rest.Rest(self._pool, max_rows=self._max_rows)
        await self.http.start()

    async def stop(self) -> None:
        await self.http.stop()
        if self._pool is not None:
            await self._pool.close()

    async def _handle(self, request: Request) -> Response:
        response = await self._route(request)
        self.log.append((request.method, request.path, response.status))
        return response

    async def _route(self, request: Request) -> Response:
        apikey = request.headers.get("apikey")
        if apikey is None:
            return _gateway_error("No API key found in request")
        if apikey != self.key:
            return _gateway_error("Invalid API key")
        if self.max_body_bytes is not None and len(request.body) > self.max_body_bytes:
            return Response(
                413, b'{"message":"Request Entity Too Large"}', {"content-type": "application/json"}
            )
        bearer = request.headers.get("authorization", "")
        authorized = bearer == f"Bearer {self.key}"
        if request.path.startswith("/rest/v1/"):
            if not authorized:
                return rest.error_response(401, "PGRST301", "JWSError JWSInvalidSignature")
            assert self.rest is not None
            return await self.rest.handle(request, request.path.removeprefix("/rest/v1/"))
        if request.path.startswith("/storage/v1/"):
            if not authorized:
                return storage.storage_error(400, "InvalidJWT", "invalid signature")
            return await self.storage.handle(request, request.path.removeprefix("/storage/v1"))
        return Response(404, b'{"message":"no Route matched with those values"}')

    # -- outages -------------------------------------------------------------------------------

    async def refuse(self) -> None:
        """The port goes dead: connections are refused, open ones are cut."""
        await self.http.refuse()

    async def accept(self) -> None:
        await self.http.accept()
