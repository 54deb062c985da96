-- viewer_edits: the edit history of these messages, oldest edit first.
SELECT message_event_id, edit_number, sender, body, new_content, edited_at
FROM message_edits
WHERE message_event_id = ANY($1::text[])
ORDER BY message_event_id, edit_number, edited_at
