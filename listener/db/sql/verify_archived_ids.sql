-- verify_archived_ids: which of these event IDs the archive holds.
SELECT event_id FROM messages WHERE event_id = ANY($1::text[])
