-- sink_known_rooms: every room the archive holds messages of or is configured for. The rooms
-- with messages come from room_stats (one row per room, kept by a trigger) rather than a
-- DISTINCT over every archived message.
SELECT room_id FROM room_stats
UNION
SELECT room_id FROM monitored_rooms
