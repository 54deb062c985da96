-- sink_register_rooms: auto-registered portals; an operator's existing row is never touched.
INSERT INTO monitored_rooms (room_id, whatsapp_id, room_name, enabled, archive_media)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::boolean[], $5::boolean[])
ON CONFLICT (room_id) DO NOTHING
