"""The sink-side contract for media rows and analysis jobs (PostgreSQL now, Supabase later)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

Status = Literal["pending", "stored", "missing", "quarantined", "rejected", "failed", "skipped"]
MediaKey = tuple[str, str]  # (event_id, mxc_url): the media table's natural key
ANALYZE = "analyze"


@dataclass(frozen=True, slots=True)
class MediaRow:
    """One ``media`` row as the archiver wants it to be."""

    event_id: str
    mxc_url: str
    kind: str
    status: Status
    status_reason: str | None = None
    room_id: str | None = None
    original_filename: str | None = None
    mimetype: str | None = None
    size_bytes: int | None = None
    sha256: str | None = None  # hex of the stored plaintext
    source_sha256: str | None = None  # hex of the bytes Synapse holds (ciphertext if encrypted)
    storage_path: str | None = None  # the blob store key
    width: int | None = None
    height: int | None = None
    duration_ms: int | None = None
    encrypted: bool = False
    uploaded_at: datetime | None = None

    @property
    def key(self) -> MediaKey:
        return (self.event_id, self.mxc_url)


@dataclass(frozen=True, slots=True)
class MediaState:
    """What the archive already holds for one media key."""

    id: int
    event_id: str
    mxc_url: str
    kind: str
    status: Status
    attempts: int
    room_id: str | None = None
    sha256: str | None = None
    storage_path: str | None = None

    @property
    def key(self) -> MediaKey:
        return (self.event_id, self.mxc_url)


class MediaSink(Protocol):
    async def media_states(self, keys: Sequence[MediaKey]) -> dict[MediaKey, MediaState]:
        """The existing rows among ``keys``."""

    async def upsert_media(self, rows: Sequence[MediaRow]) -> dict[MediaKey, int]:
        """Insert or update rows by (event_id, mxc_url); return every row's id.

        A ``stored`` row is never downgraded: a later non-stored outcome for it is ignored.
        Each write that changes a row counts one attempt.
        """

    async def ensure_analysis_jobs(self, media_ids: Sequence[int], job_type: str = ANALYZE) -> int:
        """A pending job per stored media item, at most one per content (sha256) and type;
        idempotent. Returns how many were created now."""

    async def retry_candidates(
        self, statuses: Sequence[Status], *, older_than_s: float, limit: int
    ) -> list[MediaState]:
        """Rows in ``statuses`` last written at least ``older_than_s`` ago, oldest first."""
