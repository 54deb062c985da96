-- synapse_media_events: the events behind media rows being retried (their content holds the
-- mxc URIs and EncryptedFile keys).
SELECT e.event_id, e.room_id, e.type, j.json
FROM events e
JOIN event_json j ON j.event_id = e.event_id
WHERE e.event_id = ANY($1::text[])
