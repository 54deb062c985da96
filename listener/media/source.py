"""Read-only media metadata from Synapse's database: one query per batch of media IDs."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

import asyncpg

from listener.core import errors
from listener.db import connect, queries
from listener.media import refs


@dataclass(frozen=True, slots=True)
class SynapseMedia:
    """A ``local_media_repository`` row (``origin`` None) or a ``remote_media_cache`` row."""

    media_id: str
    origin: str | None
    media_type: str | None
    media_length: int | None  # None: async upload still in progress
    created_ts_ms: int | None
    upload_name: str | None
    quarantined: bool
    sha256: str | None  # hex of the stored bytes (ciphertext when encrypted); Synapse >= 1.128
    filesystem_id: str | None = None
    url_cache: bool = False

    @property
    def relative_path(self) -> PurePosixPath:
        """Where Synapse keeps the bytes under ``media_store_path``; raises MediaRejected."""
        if self.origin is None:
            return refs.local_content_path(self.media_id)
        if not self.filesystem_id:
            raise errors.MediaRejected(f"remote media {self.media_id} has no filesystem_id")
        return refs.remote_content_path(self.origin, self.filesystem_id)


@dataclass(frozen=True, slots=True)
class Thumbnail:
    """A thumbnail Synapse generated for a local upload."""

    media_id: str
    width: int
    height: int
    mimetype: str
    method: str
    length: int | None

    @property
    def relative_path(self) -> PurePosixPath:
        return refs.local_thumbnail_path(
            self.media_id, self.width, self.height, self.mimetype, self.method
        )


@dataclass(frozen=True, slots=True)
class EventContent:
    event_id: str
    room_id: str
    event_type: str
    content: dict[str, Any]


class MediaSource:
    """Batched metadata queries; driver errors become SourceError here."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def _fetch(self, query: str, *args: object) -> list[asyncpg.Record]:
        return await connect.fetch(
            self._pool,
            queries.load(query),
            *args,
            label=f"synapse query {query}",
            error=errors.SourceError,
        )

    async def local(self, media_ids: Iterable[str]) -> dict[str, SynapseMedia]:
        wanted = sorted(set(media_ids))
        if not wanted:
            return {}
        records = await self._fetch("synapse_media_local", wanted)
        return {
            r["media_id"]: SynapseMedia(
                media_id=r["media_id"],
                origin=None,
                media_type=r["media_type"],
                media_length=r["media_length"],
                created_ts_ms=r["created_ts"],
                upload_name=r["upload_name"],
                quarantined=r["quarantined"],
                sha256=r["sha256"],
                url_cache=r["url_cache"],
            )
            for r in records
        }

    async def remote(self, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], SynapseMedia]:
        """Cached remote media by ``(origin, media_id)``."""
        wanted = sorted(set(keys))
        if not wanted:
            return {}
        origins = [origin for origin, _ in wanted]
        ids = [media_id for _, media_id in wanted]
        records = await self._fetch("synapse_media_remote", origins, ids)
        return {
            (r["media_origin"], r["media_id"]): SynapseMedia(
                media_id=r["media_id"],
                origin=r["media_origin"],
                media_type=r["media_type"],
                media_length=r["media_length"],
                created_ts_ms=r["created_ts"],
                upload_name=r["upload_name"],
                quarantined=r["quarantined"],
                sha256=r["sha256"],
                filesystem_id=r["filesystem_id"],
            )
            for r in records
        }

    async def local_thumbnails(self, media_ids: Iterable[str]) -> dict[str, list[Thumbnail]]:
        """Generated thumbnails per local media ID, largest first."""
        wanted = sorted(set(media_ids))
        if not wanted:
            return {}
        found: dict[str, list[Thumbnail]] = {}
        for r in await self._fetch("synapse_media_local_thumbnails", wanted):
            found.setdefault(r["media_id"], []).append(
                Thumbnail(
                    media_id=r["media_id"],
                    width=r["thumbnail_width"],
                    height=r["thumbnail_height"],
                    mimetype=r["thumbnail_type"],
                    method=r["thumbnail_method"],
                    length=r["thumbnail_length"],
                )
            )
        return found

    async def event_contents(self, event_ids: Sequence[str]) -> dict[str, list[EventContent]]:
        """Type, room and content of events and of their edits (for retrying their media)."""
        if not event_ids:
            return {}
        found: dict[str, list[EventContent]] = {}
        for r in await self._fetch("synapse_media_events", list(event_ids)):
            try:
                pdu = json.loads(r["json"])
            except ValueError:
                continue
            content = pdu.get("content") if isinstance(pdu, dict) else None
            if isinstance(content, dict):
                event = EventContent(r["event_id"], r["room_id"], r["type"], content)
                found.setdefault(r["target_id"], []).append(event)
        return found
