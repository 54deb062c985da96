-- sink_existing_events: which of these message event IDs the archive already holds.
SELECT event_id FROM messages WHERE event_id = ANY($1::text[])
