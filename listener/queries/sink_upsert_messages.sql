-- sink_upsert_messages: one batch of messages, idempotent by event ID. The merge rules make any
-- order of replays converge: what is known is never blanked (a Synapse-only record lacks the
-- bridge's IDs; a redacted event's pruned content is no content), a deletion is never undone,
-- the edit count never goes down. A replay that changes nothing writes nothing (see the
-- suppress_redundant_updates trigger in sql/archive/0002_fidelity.sql).
INSERT INTO messages AS m (
    event_id, room_id, room_name, sender, sender_display_name, "timestamp", message_type,
    content, content_raw, body, whatsapp_message_id, whatsapp_chat_id, whatsapp_sender_id,
    part_id, bridge_id, bridge_rowid, room_type, reply_to_event_id, thread_root_event_id,
    has_matrix_event, original_content, edit_count, edited_at, latest_edit_event_id,
    deleted_at, redaction_event_id, synapse_stream_ordering
)
SELECT * FROM unnest(
    $1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[], $7::text[],
    $8::jsonb[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[],
    $14::text[], $15::text[], $16::bigint[], $17::text[], $18::text[], $19::text[],
    $20::boolean[], $21::jsonb[], $22::integer[], $23::timestamptz[], $24::text[],
    $25::timestamptz[], $26::text[], $27::bigint[]
)
ON CONFLICT (event_id) DO UPDATE SET
    room_id = coalesce(EXCLUDED.room_id, m.room_id),
    room_name = coalesce(EXCLUDED.room_name, m.room_name),
    sender = coalesce(EXCLUDED.sender, m.sender),
    sender_display_name = coalesce(EXCLUDED.sender_display_name, m.sender_display_name),
    -- The bridge's (nanosecond) time wins over Synapse's when both are known.
    "timestamp" = CASE WHEN EXCLUDED.bridge_rowid IS NOT NULL OR m.bridge_rowid IS NULL
                       THEN EXCLUDED."timestamp" ELSE m."timestamp" END,
    message_type = coalesce(EXCLUDED.message_type, m.message_type),
    content = coalesce(EXCLUDED.content, m.content),
    content_raw = CASE WHEN EXCLUDED.content IS NOT NULL THEN EXCLUDED.content_raw
                       ELSE coalesce(EXCLUDED.content_raw, m.content_raw) END,
    body = CASE WHEN EXCLUDED.content IS NOT NULL THEN EXCLUDED.body
                ELSE coalesce(EXCLUDED.body, m.body) END,
    whatsapp_message_id = coalesce(EXCLUDED.whatsapp_message_id, m.whatsapp_message_id),
    whatsapp_chat_id = coalesce(EXCLUDED.whatsapp_chat_id, m.whatsapp_chat_id),
    whatsapp_sender_id = coalesce(EXCLUDED.whatsapp_sender_id, m.whatsapp_sender_id),
    part_id = coalesce(EXCLUDED.part_id, m.part_id),
    bridge_id = coalesce(EXCLUDED.bridge_id, m.bridge_id),
    bridge_rowid = coalesce(EXCLUDED.bridge_rowid, m.bridge_rowid),
    room_type = coalesce(EXCLUDED.room_type, m.room_type),
    reply_to_event_id = coalesce(EXCLUDED.reply_to_event_id, m.reply_to_event_id),
    thread_root_event_id = coalesce(EXCLUDED.thread_root_event_id, m.thread_root_event_id),
    has_matrix_event = EXCLUDED.has_matrix_event,
    original_content = coalesce(EXCLUDED.original_content, m.original_content),
    edit_count = greatest(EXCLUDED.edit_count, m.edit_count),
    edited_at = greatest(EXCLUDED.edited_at, m.edited_at),
    latest_edit_event_id = CASE WHEN m.edited_at IS NULL OR EXCLUDED.edited_at >= m.edited_at
                                THEN coalesce(EXCLUDED.latest_edit_event_id, m.latest_edit_event_id)
                                ELSE m.latest_edit_event_id END,
    deleted_at = coalesce(m.deleted_at, EXCLUDED.deleted_at),
    redaction_event_id = coalesce(m.redaction_event_id, EXCLUDED.redaction_event_id),
    synapse_stream_ordering = coalesce(EXCLUDED.synapse_stream_ordering, m.synapse_stream_ordering)
