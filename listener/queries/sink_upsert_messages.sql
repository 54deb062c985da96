-- sink_upsert_messages: one batch of messages, idempotent by event ID. A replay that changes
-- nothing writes nothing (no dead tuples); a replay never blanks what was already known.
INSERT INTO messages AS m (
    event_id, room_id, room_name, sender, sender_display_name, "timestamp", message_type,
    content, content_raw, body, whatsapp_message_id, whatsapp_chat_id, whatsapp_sender_id,
    part_id, bridge_id, bridge_rowid, room_type, reply_to_event_id, thread_root_event_id,
    has_matrix_event
)
SELECT * FROM unnest(
    $1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[], $7::text[],
    $8::jsonb[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[],
    $14::text[], $15::text[], $16::bigint[], $17::text[], $18::text[], $19::text[],
    $20::boolean[]
)
ON CONFLICT (event_id) DO UPDATE SET
    room_id = coalesce(EXCLUDED.room_id, m.room_id),
    room_name = coalesce(EXCLUDED.room_name, m.room_name),
    sender = coalesce(EXCLUDED.sender, m.sender),
    sender_display_name = coalesce(EXCLUDED.sender_display_name, m.sender_display_name),
    "timestamp" = EXCLUDED."timestamp",
    message_type = coalesce(EXCLUDED.message_type, m.message_type),
    content = coalesce(EXCLUDED.content, m.content),
    content_raw = coalesce(EXCLUDED.content_raw, m.content_raw),
    body = coalesce(EXCLUDED.body, m.body),
    whatsapp_message_id = EXCLUDED.whatsapp_message_id,
    whatsapp_chat_id = EXCLUDED.whatsapp_chat_id,
    whatsapp_sender_id = EXCLUDED.whatsapp_sender_id,
    part_id = EXCLUDED.part_id,
    bridge_id = EXCLUDED.bridge_id,
    bridge_rowid = EXCLUDED.bridge_rowid,
    room_type = coalesce(EXCLUDED.room_type, m.room_type),
    reply_to_event_id = coalesce(EXCLUDED.reply_to_event_id, m.reply_to_event_id),
    thread_root_event_id = coalesce(EXCLUDED.thread_root_event_id, m.thread_root_event_id),
    has_matrix_event = EXCLUDED.has_matrix_event,
    updated_at = now()
WHERE (m.room_id, m.room_name, m.sender, m.sender_display_name, m."timestamp", m.message_type,
       m.content, m.content_raw, m.body, m.bridge_rowid, m.room_type, m.reply_to_event_id,
       m.thread_root_event_id, m.whatsapp_chat_id)
      IS DISTINCT FROM
      (coalesce(EXCLUDED.room_id, m.room_id), coalesce(EXCLUDED.room_name, m.room_name),
       coalesce(EXCLUDED.sender, m.sender),
       coalesce(EXCLUDED.sender_display_name, m.sender_display_name), EXCLUDED."timestamp",
       coalesce(EXCLUDED.message_type, m.message_type), coalesce(EXCLUDED.content, m.content),
       coalesce(EXCLUDED.content_raw, m.content_raw), coalesce(EXCLUDED.body, m.body),
       EXCLUDED.bridge_rowid, coalesce(EXCLUDED.room_type, m.room_type),
       coalesce(EXCLUDED.reply_to_event_id, m.reply_to_event_id),
       coalesce(EXCLUDED.thread_root_event_id, m.thread_root_event_id),
       EXCLUDED.whatsapp_chat_id)
