-- synapse_media_events: the events behind media rows being retried (their content holds the
-- mxc URIs and EncryptedFile keys), plus their m.replace edits: the bridge delivers late or
-- retried media as an edit, so the mxc may only be in an edit's m.new_content.
SELECT e.event_id AS target_id, e.event_id, e.room_id, e.type, j.json
FROM events e
JOIN event_json j ON j.event_id = e.event_id
WHERE e.event_id = ANY($1::text[])
UNION ALL
SELECT r.relates_to_id AS target_id, e.event_id, e.room_id, e.type, j.json
FROM event_relations r
JOIN events e ON e.event_id = r.event_id
JOIN event_json j ON j.event_id = r.event_id
WHERE r.relates_to_id = ANY($1::text[]) AND r.relation_type = 'm.replace'
