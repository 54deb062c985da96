-- sink_upsert_reactions: reactions, idempotent by the reaction's event ID; a removal is never
-- undone and a pruned (redacted) reaction never blanks the emoji we kept.
INSERT INTO reactions AS r (
    reaction_event_id, message_event_id, room_id, sender, emoji, "timestamp", removed_at,
    redaction_event_id
)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                     $6::timestamptz[], $7::timestamptz[], $8::text[])
ON CONFLICT (reaction_event_id) DO UPDATE SET
    emoji = coalesce(EXCLUDED.emoji, r.emoji),
    removed_at = coalesce(r.removed_at, EXCLUDED.removed_at),
    redaction_event_id = coalesce(r.redaction_event_id, EXCLUDED.redaction_event_id)
