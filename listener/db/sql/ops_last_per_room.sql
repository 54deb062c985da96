-- ops_last_per_room: the newest archived message of every room. The distinct rooms come from a
-- skip scan of messages_room_time_idx (a recursive CTE, one index probe per room) rather than a
-- scan of the whole table; the newest message per room is one more probe of the same index.
WITH RECURSIVE rooms AS (
    (SELECT room_id FROM messages WHERE room_id IS NOT NULL ORDER BY room_id LIMIT 1)
    UNION ALL
    SELECT (SELECT m.room_id FROM messages m
            WHERE m.room_id > rooms.room_id ORDER BY m.room_id LIMIT 1)
    FROM rooms
    WHERE rooms.room_id IS NOT NULL
)
SELECT r.room_id, last.room_name, last.event_id, last."timestamp", last.archived_at,
       last.message_type
FROM rooms r
CROSS JOIN LATERAL (
    SELECT m.room_name, m.event_id, m."timestamp", m.archived_at, m.message_type
    FROM messages m
    WHERE m.room_id = r.room_id
    ORDER BY m."timestamp" DESC NULLS LAST
    LIMIT 1
) last
WHERE r.room_id IS NOT NULL
ORDER BY last."timestamp" DESC NULLS LAST
