"""Archived media bytes as HTTP responses, found by the archive's media ID only.

The storage path comes from the archive row, never from the request, and must be a content
address (``ab/<sha256>``, or the older ``ab/cd/<sha256>``) before anything is opened: a row that
says otherwise is refused, so not even a tampered archive row can point outside the store.
What a browser could run (SVG, HTML, anything not on the inline list) is sent as a download
with a neutral type.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Protocol
from urllib.parse import quote

import httpx
from starlette.responses import FileResponse, Response, StreamingResponse

from listener.viewer import reader, views

logger = logging.getLogger(__name__)

STORAGE_KEY = re.compile(r"^[0-9a-f]{2}/(?:[0-9a-f]{2}/)?[0-9a-f]{64}$")
FILENAME_UNSAFE = re.compile(r'[\x00-\x1f\x7f"\\/;]')
# The plain filename= fallback for old clients: letters, digits and a few marks only.
ASCII_UNSAFE = re.compile(r"[^A-Za-z0-9._ ()+,-]")
CACHE = "private, max-age=31536000, immutable"  # an archive ID's bytes never change


def safe_key(storage_path: str) -> str | None:
    return storage_path if STORAGE_KEY.match(storage_path) else None


def disposition(filename: str | None, *, inline: bool) -> str:
    """A Content-Disposition that names the file safely (RFC 6266 and RFC 5987)."""
    name = FILENAME_UNSAFE.sub("_", filename or "file")[:200] or "file"
    ascii_name = ASCII_UNSAFE.sub("_", name)
    kind = "inline" if inline else "attachment"
    return f"{kind}; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name, safe='')}"


def headers_for(file: reader.MediaFile, *, download: bool) -> tuple[str, dict[str, str]]:
    inline = not download and views.inline_type(file.mimetype)
    media_type = (file.mimetype or "").split(";", 1)[0].strip().lower() if inline else ""
    headers = {
        "Content-Disposition": disposition(file.filename, inline=inline),
        "Cache-Control": CACHE,
        # A file opened on its own still cannot run anything.
        "Content-Security-Policy": "default-src 'none'; sandbox",
    }
    return media_type or "application/octet-stream", headers


class MediaFiles(Protocol):
    async def response(self, file: reader.MediaFile, *, download: bool) -> Response: ...


class LocalMediaFiles:
    """The PostgreSQL sink's content-addressed folder (``MEDIA_ARCHIVE_PATH``)."""

    def __init__(self, root: Path) -> None:
        self._root = root.resolve()

    async def response(self, file: reader.MediaFile, *, download: bool) -> Response:
        key = safe_key(file.storage_path)
        if key is None:
            logger.warning(
                "media %d has a storage path that is not a content address; not served",
                file.media_id,
                extra={"action": "viewer_media_refused"},
            )
            return Response("not found\n", status_code=404, media_type="text/plain")
        path = self._root.joinpath(*key.split("/"))
        if not path.is_file():
            return Response("not in the media store\n", status_code=404, media_type="text/plain")
        media_type, headers = headers_for(file, download=download)
        return FileResponse(path, media_type=media_type, headers=headers)


class SupabaseMediaFiles:
    """The Supabase sink's Storage bucket, streamed through the viewer (the bucket stays
    private: the browser never sees the service key or a signed URL)."""

    def __init__(self, client: httpx.AsyncClient, *, base_url: str, key: str, bucket: str) -> None:
        self._client = client
        self._base = base_url.rstrip("/") + "/storage/v1/object/authenticated/" + bucket + "/"
        self._auth = {"apikey": key, "Authorization": f"Bearer {key}"}

    async def response(self, file: reader.MediaFile, *, download: bool) -> Response:
        key = safe_key(file.storage_path)
        if key is None:
            return Response("not found\n", status_code=404, media_type="text/plain")
        request = self._client.build_request("GET", self._base + key, headers=self._auth)
        try:
            upstream = await self._client.send(request, stream=True)
        except httpx.HTTPError as exc:
            logger.warning(
                "media %d: Storage unreachable (%s)",
                file.media_id,
                type(exc).__name__,
                extra={"action": "viewer_media_unavailable"},
            )
            return Response("media store unavailable\n", status_code=502, media_type="text/plain")
        if upstream.status_code != 200:
            await upstream.aclose()
            status = 404 if upstream.status_code in (400, 404) else 502
            return Response("not in the media store\n", status_code=status, media_type="text/plain")
        media_type, headers = headers_for(file, download=download)
        length = upstream.headers.get("content-length")
        if length is not None and length.isdigit():
            headers["Content-Length"] = length

        async def body() -> AsyncIterator[bytes]:
            try:
                async for chunk in upstream.aiter_raw():
                    yield chunk
            finally:
                await upstream.aclose()

        return StreamingResponse(body(), media_type=media_type, headers=headers)
