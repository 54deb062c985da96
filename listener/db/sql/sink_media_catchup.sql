-- sink_media_catchup: archived media messages that have no media row at all, in the order they
-- were last written. They are what a crash between a message's commit and its media intake
-- leaves behind; the catch-up hands them to the media archiver again.
SELECT msg.event_id, msg.message_type, msg.content::text AS content, msg.room_id,
       msg.whatsapp_chat_id, msg.updated_at
FROM messages msg
WHERE msg.updated_at >= $1
  AND msg.message_type = ANY($2::text[])
  AND msg.content IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM media WHERE media.event_id = msg.event_id)
ORDER BY msg.updated_at, msg.event_id
LIMIT $3
