"""Optional fallback: fetch media through the homeserver's authenticated media endpoint.

Used when the file is not in the local media_store (S3 storage provider, direct media, remote
media not cached yet). Streams; never holds a whole file. The access token is never logged.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from urllib.parse import quote

import httpx

from listener.media import blobstore

DOWNLOAD_PATH = "/_matrix/client/v1/media/download/{server}/{media_id}"


class HttpMediaFetcher:
    """``MEDIA_HTTP_FALLBACK_URL`` + ``MEDIA_ACCESS_TOKEN``."""

    def __init__(
        self,
        base_url: str,
        *,
        access_token: str,
        timeout_s: float = 60.0,
        chunk_bytes: int = blobstore.CHUNK_BYTES,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self._client = client or httpx.AsyncClient(base_url=base_url, timeout=timeout_s)
        self._owns_client = client is None
        self._headers = {"Authorization": f"Bearer {access_token}"}
        self._chunk_bytes = chunk_bytes

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    @contextlib.asynccontextmanager
    async def open(self, server: str, media_id: str) -> AsyncIterator[AsyncIterator[bytes]]:
        """The body as a stream of chunks. FileNotFoundError on 404, OSError on other errors.

        ``server`` and ``media_id`` must already have passed ``media_refs.parse_mxc``.
        """
        path = DOWNLOAD_PATH.format(server=quote(server, safe=""), media_id=quote(media_id))
        try:
            async with self._client.stream(
                "GET", path, headers=self._headers, follow_redirects=True
            ) as response:
                if response.status_code == 404:
                    raise FileNotFoundError(f"homeserver has no media {server}/{media_id}")
                if response.is_error:
                    raise OSError(f"homeserver answered HTTP {response.status_code}")
                yield response.aiter_bytes(self._chunk_bytes)
        except httpx.HTTPError as exc:
            raise OSError(f"media download failed: {type(exc).__name__}") from None
