-- viewer_search: messages matching tsquery text $1 (built by listener/viewer/search_query.py),
-- in chat $2 or in all chats (NULL), newest first, before the cursor ($3 time, $4 stream
-- ordering, $5 event ID) and not before $6 (the time window being searched), $7 of them.
-- The match uses the expression of messages_search_idx exactly, so the GIN index serves it;
-- the window is a range of messages_time_idx (all chats) or messages_room_order_idx (one chat).
-- The excerpt marks hits with \x02 … \x03, which the viewer turns into <mark> after escaping.
SELECT m.event_id, m.room_id, coalesce(m.synapse_stream_ordering, 0) AS seq, s.room_name,
       m.sender, m.sender_display_name, m."timestamp", m.deleted_at,
       ts_headline('archive_search', archive_search_text(m.body, m.original_content), q,
                   'StartSel=' || chr(2) || ', StopSel=' || chr(3)
                   || ', MaxWords=30, MinWords=10, MaxFragments=2') AS excerpt
FROM messages m
CROSS JOIN to_tsquery('archive_search', $1) AS q
LEFT JOIN room_stats s ON s.room_id = m.room_id
WHERE to_tsvector('archive_search'::regconfig, archive_search_text(m.body, m.original_content)) @@ q
  AND ($2::text IS NULL OR m.room_id = $2)
  AND (m."timestamp", coalesce(m.synapse_stream_ordering, 0), m.event_id) < ($3, $4, $5)
  AND m."timestamp" >= $6
ORDER BY m."timestamp" DESC, coalesce(m.synapse_stream_ordering, 0) DESC, m.event_id DESC
LIMIT $7
