-- viewer_room: one chat's header.
SELECT s.room_id,
       coalesce(s.room_name, r.room_name) AS room_name,
       s.room_type,
       coalesce(s.network, r.bridge_type, 'whatsapp') AS network,
       s.message_count,
       s.first_message,
       s.last_message
FROM room_stats s
LEFT JOIN monitored_rooms r ON r.room_id = s.room_id
WHERE s.room_id = $1
