-- sink_upsert_reactions: reactions, idempotent by the reaction's event ID (merge rules: a
-- removal is never undone, a pruned reaction never blanks the emoji; the a_merge trigger).
INSERT INTO reactions AS r (
    reaction_event_id, message_event_id, room_id, sender, emoji, "timestamp", removed_at,
    redaction_event_id
)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                     $6::timestamptz[], $7::timestamptz[], $8::text[])
ON CONFLICT (reaction_event_id) DO UPDATE SET
    message_event_id = EXCLUDED.message_event_id,
    room_id = EXCLUDED.room_id,
    sender = EXCLUDED.sender,
    emoji = EXCLUDED.emoji,
    "timestamp" = EXCLUDED."timestamp",
    removed_at = EXCLUDED.removed_at,
    redaction_event_id = EXCLUDED.redaction_event_id
