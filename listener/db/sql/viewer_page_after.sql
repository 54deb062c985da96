-- viewer_page_after: the messages of chat $1 just after the cursor ($2 time, $3 stream
-- ordering, $4 event ID), oldest first, $5 of them.
SELECT m.event_id, m.room_id, m.sender, m.sender_display_name, m."timestamp", m.message_type,
       m.content, m.body, m.reply_to_event_id, m.thread_root_event_id, m.edit_count,
       m.edited_at, m.original_content, m.deleted_at, m.redaction_event_id,
       m.has_matrix_event, m.whatsapp_message_id, m.whatsapp_chat_id, m.whatsapp_sender_id,
       coalesce(m.synapse_stream_ordering, 0) AS seq
FROM messages m
WHERE m.room_id = $1 AND (m."timestamp", coalesce(m.synapse_stream_ordering, 0), m.event_id)
      > ($2, $3, $4)
ORDER BY m."timestamp", coalesce(m.synapse_stream_ordering, 0), m.event_id
LIMIT $5
