-- sink_upsert_edits: every version of every message, idempotent by the edit's event ID (merge
-- rules: the a_merge trigger on message_edits).
INSERT INTO message_edits AS e (
    edit_event_id, message_event_id, edit_number, sender, new_content, content_raw, body, edited_at
)
SELECT * FROM unnest($1::text[], $2::text[], $3::integer[], $4::text[], $5::jsonb[], $6::text[],
                     $7::text[], $8::timestamptz[])
ON CONFLICT (edit_event_id) DO UPDATE SET
    message_event_id = EXCLUDED.message_event_id,
    edit_number = EXCLUDED.edit_number,
    sender = EXCLUDED.sender,
    new_content = EXCLUDED.new_content,
    content_raw = EXCLUDED.content_raw,
    body = EXCLUDED.body,
    edited_at = EXCLUDED.edited_at
