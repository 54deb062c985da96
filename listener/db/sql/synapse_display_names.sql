-- synapse_display_names: the latest membership display name of each (room, user) asked for,
-- used when the bridge has not synced a contact's name yet.
SELECT DISTINCT ON (room_id, user_id) room_id, user_id, display_name
FROM room_memberships
WHERE user_id = ANY($1::text[])
  AND room_id = ANY($2::text[])
ORDER BY room_id, user_id, event_stream_ordering DESC
