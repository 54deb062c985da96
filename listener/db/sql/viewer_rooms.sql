-- viewer_rooms: every archived chat (or only chat $2 when given), newest activity first, from
-- room_stats (kept by a trigger, sql/archive/0005_viewer.sql) rather than counting messages.
SELECT s.room_id,
       coalesce(s.room_name, r.room_name) AS room_name,
       s.room_type,
       coalesce(s.network, r.bridge_type, 'whatsapp') AS network,
       s.message_count,
       s.first_message,
       s.last_message
FROM room_stats s
LEFT JOIN monitored_rooms r ON r.room_id = s.room_id
WHERE $2::text IS NULL OR s.room_id = $2
ORDER BY s.last_message DESC NULLS LAST, s.room_id
LIMIT $1
