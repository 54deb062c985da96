-- viewer_newest: the time of the newest message in chat $1, or in all chats (NULL): where a
-- search of the newest messages starts its first time window.
SELECT max(last_message) FROM room_stats WHERE $1::text IS NULL OR room_id = $1
