"""Media rows and analysis jobs in the Supabase archive (the MediaSink contract over PostgREST).

The PG sink does the merge in one INSERT ... ON CONFLICT with conditions (sink_media_upsert.sql);
PostgREST upserts cannot carry conditions, so the rule is applied here on the rows just read:
a stored row is never downgraded, an unchanged stored row is not written, what is known is not
blanked, and each write counts one attempt. The media archiver never works on one key twice at
once (its in-flight set), so the read and the write do not race with each other.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from listener.core import errors
from listener.sinks import media_protocol
from listener.sinks.supabase import api as supabase_api
from listener.sinks.supabase import rows as supabase_rows

Now = Callable[[], datetime]
_JOB_ATTEMPTS = 3


def _utc_now() -> datetime:
    return datetime.now(UTC)


class SupabaseMediaSink:
    """:class:`~listener.sinks.media_protocol.MediaSink` on the Supabase archive."""

    def __init__(self, api: supabase_api.SupabaseApi, *, now: Now = _utc_now) -> None:
        self._api = api
        self._now = now

    async def _rows(
        self, keys: Sequence[media_protocol.MediaKey]
    ) -> dict[media_protocol.MediaKey, Any]:
        wanted = set(keys)
        events = sorted({event_id for event_id, _ in wanted})
        found = await self._api.select_in("media", supabase_rows.MEDIA_COLUMNS, "event_id", events)
        return {
            (r["event_id"], r["mxc_url"]): r
            for r in found
            if (r["event_id"], r["mxc_url"]) in wanted
        }

    async def media_states(
        self, keys: Sequence[media_protocol.MediaKey]
    ) -> dict[media_protocol.MediaKey, media_protocol.MediaState]:
        if not keys:
            return {}
        return {
            key: supabase_rows.media_state(row) for key, row in (await self._rows(keys)).items()
        }

    async def upsert_media(
        self, rows: Sequence[media_protocol.MediaRow]
    ) -> dict[media_protocol.MediaKey, int]:
        unique = list({row.key: row for row in rows}.values())
        if not unique:
            return {}
        old = await self._rows([row.key for row in unique])
        now = self._now()
        changes = [
            supabase_rows.media_row(row, old.get(row.key), now=now)
            for row in unique
            if supabase_rows.media_needs_write(row, old.get(row.key))
        ]
        ids = {key: int(r["id"]) for key, r in old.items()}
        if changes:
            written = await self._api.upsert(
                "media",
                changes,
                on_conflict=supabase_rows.MEDIA_KEY,
                returning="id,event_id,mxc_url",
            )
            ids.update({(r["event_id"], r["mxc_url"]): int(r["id"]) for r in written})
        return ids

    async def ensure_analysis_jobs(
        self, media_ids: Sequence[int], job_type: str = media_protocol.ANALYZE
    ) -> int:
        if not media_ids:
            return 0
        for attempt in range(_JOB_ATTEMPTS):
            try:
                return await self._create_jobs(sorted(set(media_ids)), job_type)
            except errors.RowRejected as exc:
                # 23505 on analysis_jobs_sha256_type_key: another writer created the job for
                # this content between our read and our insert. Read again.
                if "23505" not in str(exc) or attempt == _JOB_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    async def _create_jobs(self, media_ids: list[int], job_type: str) -> int:
        ids = [str(i) for i in media_ids]
        stored = await self._api.select_in(
            "media",
            "id,event_id,sha256",
            "id",
            ids,
            lambda q: q.eq("status", "stored").order("id"),
        )
        shas = sorted({r["sha256"] for r in stored if r["sha256"]})

        def of_type(q: supabase_api.Query) -> supabase_api.Query:
            return q.eq("job_type", job_type)

        by_media = await self._api.select_in("analysis_jobs", "media_id", "media_id", ids, of_type)
        by_sha = await self._api.select_in("analysis_jobs", "sha256", "sha256", shas, of_type)
        taken_media = {int(r["media_id"]) for r in by_media}
        taken_sha = {r["sha256"] for r in by_sha}
        jobs = []
        for r in sorted(stored, key=lambda r: int(r["id"])):
            if int(r["id"]) in taken_media or (r["sha256"] and r["sha256"] in taken_sha):
                continue
            if r["sha256"]:
                taken_sha.add(r["sha256"])
            jobs.append(
                {
                    "media_id": int(r["id"]),
                    "event_id": r["event_id"],
                    "job_type": job_type,
                    "status": "pending",
                    "sha256": r["sha256"],
                }
            )
        if not jobs:
            return 0
        created = await self._api.upsert(
            "analysis_jobs",
            jobs,
            on_conflict=supabase_rows.JOBS_KEY,
            ignore_duplicates=True,
            returning="id",
        )
        return len(created)

    async def retry_candidates(
        self, statuses: Sequence[media_protocol.Status], *, older_than_s: float, limit: int
    ) -> list[media_protocol.MediaState]:
        # Our clock, not the database's: a skew of seconds against a retry period of minutes.
        before = (self._now() - timedelta(seconds=older_than_s)).isoformat()

        def where(q: supabase_api.Query) -> supabase_api.Query:
            q = q.in_("status", list(statuses)).lte("updated_at", before)
            return q.order("updated_at").order("id").limit(limit)

        rows = await self._api.select("media", supabase_rows.MEDIA_COLUMNS, where)
        return [supabase_rows.media_state(row) for row in rows]
