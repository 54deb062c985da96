"""The Supabase sink: the archive in a Supabase project, through its REST API (PostgREST).

Same schema as the PostgreSQL sink (sql/archive/*.sql applied to Supabase's database), same
results: the merge rules for messages, edits and reactions are BEFORE UPDATE triggers in that
schema, so a plain ``resolution=merge-duplicates`` upsert converges exactly like the PG sink's
INSERT ... ON CONFLICT. What PostgREST cannot express is done here:

- the cursor only moves forward: a conditional PATCH (``value->rowid=lt.N``), and an insert
  that ignores duplicates when there is no row yet;
- a re-recorded failure counts one more attempt: read, then upsert (the PG sink increments in
  SQL; two workers re-recording the same subject at the same moment may count one attempt
  less; nothing else depends on the count).

There is no transaction across tables: a batch is written table by table, the cursor last, so
a failure part-way leaves nothing the cursor claims; the replay rewrites the rest idempotently.
The cursor of a batch that carries records is saved by one background task after ``write``
returns (so a message is not kept waiting for a second round trip, and saves coalesce under
load): it is only ever saved after the records it covers are durable, and a save that fails is
retried by the next one; a cursor that lags only means a longer, idempotent replay. A batch that
is only a cursor (the pipeline's periodic and final flush) is saved before ``write`` returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from listener.core import errors, models
from listener.schema import migrate
from listener.sinks import protocol
from listener.sinks.supabase import api as supabase_api
from listener.sinks.supabase import media_sink as supabase_media_sink
from listener.sinks.supabase import rows as supabase_rows

logger = logging.getLogger(__name__)

Now = Callable[[], datetime]
CLOSE_FLUSH_TIMEOUT_S = 5.0
# At most one background cursor save per this interval: at a trickle every batch would otherwise
# cost a second request; the cursor lags by this much at most (a replay of that much, at worst).
CURSOR_SAVE_INTERVAL_S = 0.5


def _utc_now() -> datetime:
    return datetime.now(UTC)


class SupabaseSink:
    name = "supabase"

    def __init__(
        self,
        api: supabase_api.SupabaseApi,
        *,
        now: Now = _utc_now,
        cursor_save_interval_s: float = CURSOR_SAVE_INTERVAL_S,
    ) -> None:
        self.api = api
        self._now = now
        self._cursor_save_interval_s = cursor_save_interval_s
        self._cursor_wanted: int | None = None
        self._cursor_saved: int | None = None
        self._cursor_due = asyncio.Event()
        self._cursor_task: asyncio.Task[None] | None = None

    async def open(self) -> None:
        """Connect, prove the key works and the schema is migrated; fail at start otherwise."""
        await self.api.open()
        try:
            rows = await self.api.select("archive_schema_migrations", "version")
        except errors.SinkAuthError as exc:
            await self.close()
            raise errors.ConfigError(str(exc)) from None
        except errors.RowRejected as exc:
            await self.close()
            raise errors.SchemaError(
                f"the Supabase archive is not migrated ({exc}); run `archiver-db migrate` "
                "with SUPABASE_DB_URL set"
            ) from None
        except errors.SinkError:
            await self.close()
            raise
        applied = {row["version"] for row in rows}
        missing = [p.stem for p in migrate.migration_files() if p.stem not in applied]
        if missing:
            await self.close()
            raise errors.SchemaError(
                f"the Supabase archive is not migrated (pending: {', '.join(missing)}); "
                "run `archiver-db migrate` with SUPABASE_DB_URL set"
            )
        self._cursor_task = asyncio.create_task(self._cursor_writer(), name="supabase-cursor")

    async def close(self) -> None:
        if self._cursor_task is not None:
            self._cursor_task.cancel()
            await asyncio.gather(self._cursor_task, return_exceptions=True)
            self._cursor_task = None
            # The last deferred cursor, if the writer had not saved it yet (best effort: a
            # lagging cursor only means a replay).
            with contextlib.suppress(errors.SinkError, TimeoutError):
                await asyncio.wait_for(self._flush_cursor(), CLOSE_FLUSH_TIMEOUT_S)
        await self.api.close()

    async def _cursor_writer(self) -> None:
        while True:
            await self._cursor_due.wait()
            self._cursor_due.clear()
            try:
                await self._flush_cursor()
            except errors.SinkError as exc:
                logger.warning(
                    "saving the cursor failed (the next save retries): %s",
                    exc,
                    extra={"action": "cursor_save_failed"},
                )
            await asyncio.sleep(self._cursor_save_interval_s)

    async def _flush_cursor(self) -> None:
        wanted = self._cursor_wanted
        if wanted is not None and wanted != self._cursor_saved:
            await self._save_cursor(wanted)
            self._cursor_saved = max(wanted, self._cursor_saved or 0)

    def _defer_cursor(self, rowid: int) -> None:
        self._cursor_wanted = max(rowid, self._cursor_wanted or 0)
        self._cursor_due.set()

    async def write(self, batch: models.ArchiveBatch) -> None:
        api = self.api
        if batch.messages:
            rows = [
                supabase_rows.message_row(m) for m in supabase_rows.dedupe_messages(batch.messages)
            ]
            await api.upsert("messages", rows, on_conflict=supabase_rows.MESSAGES_KEY)
        if batch.edits:
            edits = {e.edit_event_id: supabase_rows.edit_row(e) for e in batch.edits}
            await api.upsert(
                "message_edits", list(edits.values()), on_conflict=supabase_rows.EDITS_KEY
            )
        if batch.reactions:
            reactions = {
                r.reaction_event_id: supabase_rows.reaction_row(r) for r in batch.reactions
            }
            await api.upsert(
                "reactions", list(reactions.values()), on_conflict=supabase_rows.REACTIONS_KEY
            )
        # Resolve before recording: a failure re-recorded in this same batch stays open.
        if batch.resolved_subjects:
            await self._resolve(sorted(set(batch.resolved_subjects)))
        if batch.failures:
            await self._record_failures(batch.failures)
        if batch.new_rooms:
            rooms = {r.room_id: supabase_rows.room_row(r) for r in batch.new_rooms}
            # ignore-duplicates: an operator's row (enabled = false, say) is never touched.
            await api.upsert(
                "monitored_rooms",
                list(rooms.values()),
                on_conflict=supabase_rows.ROOMS_KEY,
                ignore_duplicates=True,
            )
        if batch.cursor is not None:
            if batch and self._cursor_task is not None:
                self._defer_cursor(batch.cursor)
            else:
                await self._save_cursor(batch.cursor)

    async def _resolve(self, subjects: list[str]) -> None:
        stamp = {"resolved_at": self._now().isoformat()}
        for chunk in supabase_rows.split_for_url(subjects, max_chars=supabase_api.URL_FILTER_CHARS):

            def where(q: supabase_api.Query, chunk: list[str] = chunk) -> supabase_api.Query:
                return q.in_("subject", chunk).is_("resolved_at", "null")

            await self.api.update("archive_failures", stamp, where)

    async def _record_failures(self, failures: list[models.Failure]) -> None:
        unique = list({(f.kind, f.subject): f for f in failures}.values())
        known = await self.api.select_in(
            "archive_failures",
            "kind,subject,attempts",
            "subject",
            sorted({f.subject for f in unique}),
        )
        attempts = {(r["kind"], r["subject"]): int(r["attempts"]) for r in known}
        now = self._now()
        rows = [
            supabase_rows.failure_row(f, attempts=attempts.get((f.kind, f.subject), 0) + 1, now=now)
            for f in unique
        ]
        await self.api.upsert("archive_failures", rows, on_conflict=supabase_rows.FAILURES_KEY)

    async def _save_cursor(self, rowid: int) -> None:
        """Forward only (workers finish out of order): usually one request."""
        if await self._advance_cursor(rowid):
            return
        row = {
            "name": protocol.CURSOR_KEY,
            "value": {"rowid": rowid},
            "updated_at": self._now().isoformat(),
        }
        await self.api.upsert(
            "archiver_state", [row], on_conflict=supabase_rows.STATE_KEY, ignore_duplicates=True
        )
        # Another writer may have created the row first, with a smaller rowid.
        await self._advance_cursor(rowid)

    async def _advance_cursor(self, rowid: int) -> bool:
        def where(q: supabase_api.Query) -> supabase_api.Query:
            # PostgREST compares the jsonb number with a jsonb literal: numerically.
            return q.eq("name", protocol.CURSOR_KEY).lt("value->rowid", rowid)

        values = {"value": {"rowid": rowid}, "updated_at": self._now().isoformat()}
        return bool(await self.api.update("archiver_state", values, where, returning="name"))

    async def load_state(self, key: str) -> Any | None:
        rows = await self.api.select("archiver_state", "value", lambda q: q.eq("name", key))
        return rows[0]["value"] if rows else None

    async def save_state(self, key: str, value: Any) -> None:
        if key == protocol.CURSOR_KEY:
            await self.write(models.ArchiveBatch(cursor=int(value["rowid"])))
            return
        # A JSON round trip: the value must be plain JSON, as the PG sink's json.dumps demands.
        row = {
            "name": key,
            "value": json.loads(json.dumps(value)),
            "updated_at": self._now().isoformat(),
        }
        await self.api.upsert("archiver_state", [row], on_conflict=supabase_rows.STATE_KEY)

    async def monitored_rooms(self) -> list[models.MonitoredRoom]:
        rows = await self.api.select_keyset(
            "monitored_rooms", "room_id,enabled,archive_media,whatsapp_id,room_name", "room_id"
        )
        return [supabase_rows.room_from(row) for row in rows]

    async def open_failures(self, kinds: list[str]) -> list[models.Failure]:
        if not kinds:
            return []

        def where(q: supabase_api.Query) -> supabase_api.Query:
            return q.is_("resolved_at", "null").in_("kind", kinds)

        columns = "id,kind,subject,reason,bridge_rowid,event_id,room_id,detail"
        rows = await self.api.select_keyset("archive_failures", columns, "id", where)
        return [supabase_rows.failure_from(row) for row in rows]

    async def existing_event_ids(self, event_ids: list[str]) -> set[str]:
        rows = await self.api.select_in("messages", "event_id", "event_id", event_ids)
        return {row["event_id"] for row in rows}

    async def known_rooms(self) -> set[str]:
        rooms = {room.room_id for room in await self.monitored_rooms()}
        return rooms | await self._message_rooms()

    async def undecrypted(self, after_event_id: str, limit: int) -> list[tuple[str, str, str]]:
        """As the PostgreSQL sink's sink_undecrypted.sql, through PostgREST."""

        def waiting(q: supabase_api.Query) -> supabase_api.Query:
            q = q.eq("decryption", "no_session").not_.is_("megolm_session_id", "null")
            return q.gt("event_id", after_event_id).order("event_id").limit(limit)

        rows = await self.api.select("messages", "event_id,room_id,megolm_session_id", waiting)
        return [(r["event_id"], r["room_id"], r["megolm_session_id"]) for r in rows]

    async def _message_rooms(self) -> set[str]:
        """DISTINCT room_id without reading every message: a loose index scan, one cheap request
        per room (messages_room_order_idx leads with room_id), since PostgREST has no DISTINCT."""
        rooms: set[str] = set()
        last: str | None = None
        while True:

            def next_room(q: supabase_api.Query, after: str | None = last) -> supabase_api.Query:
                q = q.not_.is_("room_id", "null").order("room_id").limit(1)
                return q.gt("room_id", after) if after is not None else q

            rows = await self.api.select("messages", "room_id", next_room)
            if not rows:
                return rooms
            last = str(rows[0]["room_id"])
            rooms.add(last)

    async def media_catchup(
        self, since: datetime, message_types: list[str], limit: int
    ) -> list[dict[str, Any]]:
        """Archived media messages without any media row, oldest write first (as the PG sink's
        sink_media_catchup.sql; the anti-join is done here, a page of messages at a time)."""
        found: list[dict[str, Any]] = []
        after = since.isoformat()
        while len(found) < limit:
            page = await self._catchup_page(after, message_types, limit)
            if not page:
                break
            with_media = await self.api.select_in(
                "media", "event_id", "event_id", [r["event_id"] for r in page]
            )
            known = {r["event_id"] for r in with_media}
            found += [_catchup_row(r) for r in page if r["event_id"] not in known]
            if len(page) < limit:
                break
            after = page[-1]["updated_at"]
        return found[:limit]

    async def _catchup_page(
        self, after: str, message_types: list[str], limit: int
    ) -> list[dict[str, Any]]:
        def where(q: supabase_api.Query) -> supabase_api.Query:
            q = q.gte("updated_at", after).in_("message_type", message_types)
            return q.not_.is_("content", "null").order("updated_at").order("event_id").limit(limit)

        columns = "event_id,message_type,content,room_id,whatsapp_chat_id,updated_at"
        return await self.api.select("messages", columns, where)

    def media_sink(self) -> supabase_media_sink.SupabaseMediaSink:
        """Media rows and analysis jobs in this archive, through the same API client."""
        return supabase_media_sink.SupabaseMediaSink(self.api, now=self._now)

    async def ping(self) -> None:
        await self.api.select("archiver_state", "name", lambda q: q.limit(1))


def _catchup_row(row: dict[str, Any]) -> dict[str, Any]:
    return {
        **row,
        "content": json.dumps(row["content"]),
        "updated_at": datetime.fromisoformat(row["updated_at"]),
    }
