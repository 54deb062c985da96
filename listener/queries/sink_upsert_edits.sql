-- sink_upsert_edits: every version of every message, idempotent by the edit's event ID.
INSERT INTO message_edits AS e (
    edit_event_id, message_event_id, edit_number, sender, new_content, content_raw, body, edited_at
)
SELECT * FROM unnest($1::text[], $2::text[], $3::integer[], $4::text[], $5::jsonb[], $6::text[],
                     $7::text[], $8::timestamptz[])
ON CONFLICT (edit_event_id) DO UPDATE SET
    edit_number = EXCLUDED.edit_number,
    new_content = coalesce(EXCLUDED.new_content, e.new_content),
    content_raw = coalesce(EXCLUDED.content_raw, e.content_raw),
    body = coalesce(EXCLUDED.body, e.body)
