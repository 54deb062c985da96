-- ops_last_per_room: the newest archived message of every room. The rooms come from room_stats
-- (kept by a trigger, sql/archive/0005_viewer.sql); each room's newest message is one backward
-- probe of messages_room_order_idx, whose order the ORDER BY below matches exactly (an order
-- the index cannot give, such as DESC NULLS LAST, would sort every message of the room: that
-- is what made `status` slower as the history grew).
SELECT s.room_id, coalesce(last.room_name, s.room_name) AS room_name, last.event_id,
       last."timestamp", last.archived_at, last.message_type
FROM room_stats s
CROSS JOIN LATERAL (
    SELECT m.room_name, m.event_id, m."timestamp", m.archived_at, m.message_type
    FROM messages m
    WHERE m.room_id = s.room_id
    ORDER BY m."timestamp" DESC, coalesce(m.synapse_stream_ordering, 0) DESC, m.event_id DESC
    LIMIT 1
) last
ORDER BY last."timestamp" DESC, s.room_id
