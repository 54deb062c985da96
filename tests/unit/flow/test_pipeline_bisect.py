"""A rejected batch is bisected: the bad record alone becomes a failure, nothing else is lost."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

from listener.core import errors, models, roomfilter, tracker
from listener.flow import pipeline
from listener.ops import metrics

T0 = datetime(2026, 1, 1, tzinfo=UTC)


class RejectingSink:
    """Refuses any batch holding a record whose event ID is in ``bad``; keeps the rest."""

    def __init__(self, bad: set[str]) -> None:
        self.bad = bad
        self.written: list[models.ArchiveBatch] = []

    async def write(self, batch: models.ArchiveBatch) -> None:
        ids = {m.event_id for m in batch.messages}
        ids |= {e.edit_event_id for e in batch.edits}
        ids |= {r.reaction_event_id for r in batch.reactions}
        if ids & self.bad:
            raise errors.RowRejected("new row violates check constraint")
        self.written.append(batch)


def _message(event_id: str) -> models.ArchivedMessage:
    return models.ArchivedMessage(
        event_id=event_id, room_id="!r", room_name=None, sender="@s", sender_display_name=None,
        timestamp=T0, message_type="m.text", content_json="{}", content_raw=None, body=None,
        whatsapp_message_id=None, whatsapp_chat_id=None, whatsapp_sender_id=None, part_id=None,
        bridge_id=None, bridge_rowid=None, room_type=None, reply_to_event_id=None,
        thread_root_event_id=None, has_matrix_event=True,
    )  # fmt: skip


def _processor(sink: RejectingSink) -> pipeline.Processor:
    rooms = pipeline.RoomDirectory(
        roomfilter.RoomFilter.build(configured=(), rows=(), auto_register=False)
    )
    fake: Any = None
    return pipeline.Processor(
        bridge=fake,
        synapse=fake,
        sink=sink,  # type: ignore[arg-type]
        tracker=tracker.RowidTracker(0, gap_timeout_s=1.0),
        rooms=rooms,
        metrics=metrics.Metrics(),
        missing_event_timeout_s=1.0,
    )


async def test_bisect__bad_message_recorded_others_and_extras_written() -> None:
    sink = RejectingSink({"$m3"})
    edit = models.ArchivedEdit("$e1", "$m1", 1, "@s", "{}", None, "x", T0)
    reaction = models.ArchivedReaction("$r1", "$m2", "!r", "@s", "👍", T0, None, None)
    batch = models.ArchiveBatch(
        messages=[_message(f"$m{i}") for i in range(6)],
        edits=[edit],
        reactions=[reaction],
        new_rooms=[models.MonitoredRoom("!new")],
        cursor=42,
    )

    await _processor(sink)._write(batch)

    written = [m.event_id for b in sink.written for m in b.messages]
    assert sorted(written) == ["$m0", "$m1", "$m2", "$m4", "$m5"]
    assert [e for b in sink.written for e in b.edits] == [edit]
    assert [r for b in sink.written for r in b.reactions] == [reaction]
    assert [b.cursor for b in sink.written if b.cursor is not None] == [42]
    assert [r.room_id for b in sink.written for r in b.new_rooms] == ["!new"]
    failures = [f for b in sink.written for f in b.failures]
    assert [(f.kind, f.subject) for f in failures] == [("sink_rejected", "$m3")]


async def test_bisect__bad_reaction_recorded_messages_written() -> None:
    sink = RejectingSink({"$r1"})
    reaction = models.ArchivedReaction("$r1", "$m0", "!r", "@s", "👍", T0, None, None)
    batch = models.ArchiveBatch(messages=[_message("$m0"), _message("$m1")], reactions=[reaction])

    await _processor(sink)._write(batch)

    assert sorted(m.event_id for b in sink.written for m in b.messages) == ["$m0", "$m1"]
    failures = [f for b in sink.written for f in b.failures]
    assert [(f.kind, f.subject) for f in failures] == [("sink_rejected", "$r1")]
    assert dataclasses.asdict(reaction)["reaction_event_id"] == "$r1"
