"""A TUS 1.0.0 client (core protocol + creation extension) for Supabase Storage's resumable
uploads, over the httpx client the supabase package already uses.

storage3 (the package's Storage client) only has single-request uploads, which Supabase limits to
about 6 MB per request and which restart from zero when a connection drops. Here a file is sent
from disk in ``chunk_bytes`` PATCH requests (Supabase requires 6 MiB chunks, the last one may be
shorter); after any failed PATCH the next attempt first asks the server where it stands (HEAD,
``Upload-Offset``) and continues from there, so a dropped connection costs at most one chunk.

Protocol: https://tus.io/protocols/resumable-upload (core: HEAD/PATCH, ``Upload-Offset``,
``Content-Type: application/offset+octet-stream``, 409 on an offset mismatch, 204 on success;
creation: POST with ``Upload-Length`` and ``Upload-Metadata``, 201 with ``Location``).
Supabase's endpoint and metadata keys (bucketName, objectName, contentType, cacheControl) and
``x-upsert``: https://supabase.com/docs/guides/storage/uploads/resumable-uploads
"""

from __future__ import annotations

import base64
import os
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import aiofiles
import httpx

from listener.sinks.supabase import retry

TUS_VERSION = "1.0.0"
CHUNK_BYTES = 6 * 1024 * 1024  # Supabase: "it must be set to 6MB (for now)"
_READ_BYTES = 1 << 20


def metadata_header(values: Mapping[str, str]) -> str:
    """``Upload-Metadata``: comma-separated ``key base64(value)`` pairs."""
    return ",".join(
        f"{key} {base64.b64encode(value.encode('utf-8')).decode('ascii')}"
        for key, value in values.items()
    )


@dataclass
class _Upload:
    url: str | None = None
    offset: int = 0
    # A request failed after its body may have been partly received: ask before sending more.
    dirty: bool = False


class TusClient:
    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        endpoint: str,
        headers: Mapping[str, str],
        caller: retry.Caller,
        chunk_bytes: int = CHUNK_BYTES,
    ) -> None:
        self._http = http
        self._endpoint = endpoint
        self._headers = {**headers, "Tus-Resumable": TUS_VERSION}
        self._caller = caller
        self._chunk_bytes = chunk_bytes
        self.patches = 0
        self.resumes = 0

    async def upload(
        self, path: Path, *, bucket: str, object_name: str, content_type: str, upsert: bool = True
    ) -> None:
        """Send ``path`` to ``bucket/object_name``; returns once Storage holds every byte."""
        length = os.stat(path).st_size
        metadata = {
            "bucketName": bucket,
            "objectName": object_name,
            "contentType": content_type,
            "cacheControl": "3600",
        }
        state = _Upload()
        what = f"resumable upload of {object_name}"
        while state.url is None or state.offset < length:
            await self._caller.call(what, lambda: self._step(state, path, length, metadata, upsert))

    async def _step(
        self, state: _Upload, path: Path, length: int, metadata: dict[str, str], upsert: bool
    ) -> None:
        """One request's worth of progress: create, re-sync the offset, or one chunk."""
        if state.url is None:
            state.url = await self._create(length, metadata, upsert)
            state.offset, state.dirty = 0, False
            return
        if state.dirty:
            offset = await self._head(state.url)
            if offset is None:  # the server forgot the upload (expired): start again
                state.url = None
                return
            self.resumes += 1
            state.offset, state.dirty = offset, False
        if state.offset >= length:
            return
        state.dirty = True
        state.offset = await self._patch(state.url, path, state.offset, length)
        state.dirty = False

    async def _create(self, length: int, metadata: dict[str, str], upsert: bool) -> str:
        headers = {
            **self._headers,
            "Upload-Length": str(length),
            "Upload-Metadata": metadata_header(metadata),
            "x-upsert": "true" if upsert else "false",
        }
        response = await self._http.post(self._endpoint, headers=headers)
        response.raise_for_status()
        location = response.headers.get("location")
        if not location:
            raise httpx.RemoteProtocolError("TUS creation answered without a Location")
        return str(response.url.join(location))

    async def _head(self, url: str) -> int | None:
        response = await self._http.head(url, headers=self._headers)
        if response.status_code in (404, 410):
            return None
        response.raise_for_status()
        return int(response.headers["upload-offset"])

    async def _patch(self, url: str, path: Path, offset: int, length: int) -> int:
        size = min(self._chunk_bytes, length - offset)
        headers = {
            **self._headers,
            "Upload-Offset": str(offset),
            "Content-Type": "application/offset+octet-stream",
            "Content-Length": str(size),
        }
        self.patches += 1
        response = await self._http.patch(
            url, headers=headers, content=_read_range(path, offset, size)
        )
        if response.status_code == 409:  # our offset is not the server's: ask it (dirty stays)
            raise httpx.RemoteProtocolError("TUS offset mismatch (409)")
        response.raise_for_status()
        return int(response.headers["upload-offset"])


async def _read_range(path: Path, offset: int, size: int) -> AsyncIterator[bytes]:
    """``size`` bytes of ``path`` from ``offset``, a megabyte at a time."""
    async with aiofiles.open(path, "rb") as source:
        await source.seek(offset)
        left = size
        while left > 0:
            piece = await source.read(min(_READ_BYTES, left))
            if not piece:
                raise OSError(f"{path} ended {left} bytes early")
            left -= len(piece)
            yield piece
