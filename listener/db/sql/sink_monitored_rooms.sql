-- sink_monitored_rooms: the room configuration table.
SELECT room_id, enabled, archive_media, whatsapp_id, room_name FROM monitored_rooms
