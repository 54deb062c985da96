-- export_changed_months: the (chat, month in time zone $2) pairs where anything a page shows
-- changed after $1: a message archived or updated (edits and deletions update it), a reaction
-- added or removed, an edit archived, media stored or retried. An incremental export renders
-- only those pages.
SELECT m.room_id, date_trunc('month', m."timestamp", $2) AS month
FROM messages m
WHERE m.updated_at > $1
UNION
SELECT m.room_id, date_trunc('month', m."timestamp", $2)
FROM reactions r JOIN messages m ON m.event_id = r.message_event_id
WHERE r.archived_at > $1 OR r.removed_at > $1
UNION
SELECT m.room_id, date_trunc('month', m."timestamp", $2)
FROM message_edits e JOIN messages m ON m.event_id = e.message_event_id
WHERE e.archived_at > $1
UNION
SELECT m.room_id, date_trunc('month', m."timestamp", $2)
FROM media x JOIN messages m ON m.event_id = x.event_id
WHERE x.updated_at > $1
