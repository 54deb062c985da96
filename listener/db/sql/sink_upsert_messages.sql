-- sink_upsert_messages: one batch of messages, idempotent by event ID. A plain upsert: the
-- merge rules (never blank what is known, never undo a deletion) and the no-op suppression are
-- BEFORE UPDATE triggers in the archive schema (sql/archive/0002_fidelity.sql), so the Supabase
-- sink's PostgREST upserts behave exactly the same.
INSERT INTO messages AS m (
    event_id, room_id, room_name, sender, sender_display_name, "timestamp", message_type,
    content, content_raw, body, whatsapp_message_id, whatsapp_chat_id, whatsapp_sender_id,
    part_id, bridge_id, bridge_rowid, room_type, reply_to_event_id, thread_root_event_id,
    has_matrix_event, original_content, edit_count, edited_at, latest_edit_event_id,
    deleted_at, redaction_event_id, synapse_stream_ordering, bridge, network,
    network_message_id, network_chat_id, network_sender_id, decryption, encrypted_content,
    megolm_session_id, decryption_error
)
-- The batch arrives as one JSON array (one parameter: far cheaper to encode than 27 arrays).
SELECT r.event_id, r.room_id, r.room_name, r.sender, r.sender_display_name, r."timestamp",
       r.message_type, r.content, r.content_raw, r.body, r.whatsapp_message_id,
       r.whatsapp_chat_id, r.whatsapp_sender_id, r.part_id, r.bridge_id, r.bridge_rowid,
       r.room_type, r.reply_to_event_id, r.thread_root_event_id, r.has_matrix_event,
       r.original_content, r.edit_count, r.edited_at, r.latest_edit_event_id, r.deleted_at,
       r.redaction_event_id, r.synapse_stream_ordering, r.bridge, r.network,
       r.network_message_id, r.network_chat_id, r.network_sender_id, r.decryption,
       r.encrypted_content, r.megolm_session_id, r.decryption_error
FROM json_populate_recordset(NULL::messages, $1::json) AS r
ON CONFLICT (event_id) DO UPDATE SET
    room_id = EXCLUDED.room_id,
    room_name = EXCLUDED.room_name,
    sender = EXCLUDED.sender,
    sender_display_name = EXCLUDED.sender_display_name,
    "timestamp" = EXCLUDED."timestamp",
    message_type = EXCLUDED.message_type,
    content = EXCLUDED.content,
    content_raw = EXCLUDED.content_raw,
    body = EXCLUDED.body,
    whatsapp_message_id = EXCLUDED.whatsapp_message_id,
    whatsapp_chat_id = EXCLUDED.whatsapp_chat_id,
    whatsapp_sender_id = EXCLUDED.whatsapp_sender_id,
    part_id = EXCLUDED.part_id,
    bridge_id = EXCLUDED.bridge_id,
    bridge_rowid = EXCLUDED.bridge_rowid,
    room_type = EXCLUDED.room_type,
    reply_to_event_id = EXCLUDED.reply_to_event_id,
    thread_root_event_id = EXCLUDED.thread_root_event_id,
    has_matrix_event = EXCLUDED.has_matrix_event,
    original_content = EXCLUDED.original_content,
    edit_count = EXCLUDED.edit_count,
    edited_at = EXCLUDED.edited_at,
    latest_edit_event_id = EXCLUDED.latest_edit_event_id,
    deleted_at = EXCLUDED.deleted_at,
    redaction_event_id = EXCLUDED.redaction_event_id,
    synapse_stream_ordering = EXCLUDED.synapse_stream_ordering,
    bridge = EXCLUDED.bridge,
    network = EXCLUDED.network,
    network_message_id = EXCLUDED.network_message_id,
    network_chat_id = EXCLUDED.network_chat_id,
    network_sender_id = EXCLUDED.network_sender_id,
    decryption = EXCLUDED.decryption,
    encrypted_content = EXCLUDED.encrypted_content,
    megolm_session_id = EXCLUDED.megolm_session_id,
    decryption_error = EXCLUDED.decryption_error
