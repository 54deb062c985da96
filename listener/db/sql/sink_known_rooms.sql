-- sink_known_rooms: every room the archive holds messages of or is configured for.
SELECT DISTINCT room_id FROM messages WHERE room_id IS NOT NULL
UNION
SELECT room_id FROM monitored_rooms
