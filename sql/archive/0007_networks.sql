-- 0007: every bridge, not only WhatsApp (issue #16). Additive: the seed design's whatsapp_*
-- columns keep their meaning and stay filled for WhatsApp.
--
-- messages.bridge               the configured bridge's name (one archive, several bridges)
-- messages.network              its network profile (whatsapp, signal, meta, gmessages, slack,
--                               generic): listener/core/networks/
-- messages.network_*_id         the bridge's own message.id, portal.id and ghost.id, verbatim
--                               (unique within one bridge, not across bridges: keep `bridge`)
-- room_stats.bridge / .network  the same for each chat (the viewer's chat list)

ALTER TABLE messages
    ADD COLUMN IF NOT EXISTS bridge              TEXT,
    ADD COLUMN IF NOT EXISTS network             TEXT,
    ADD COLUMN IF NOT EXISTS network_message_id  TEXT,
    ADD COLUMN IF NOT EXISTS network_chat_id     TEXT,
    ADD COLUMN IF NOT EXISTS network_sender_id   TEXT;

ALTER TABLE room_stats
    ADD COLUMN IF NOT EXISTS bridge   TEXT,
    ADD COLUMN IF NOT EXISTS network  TEXT;

-- The merge rules (0002) learn the new columns: an update never blanks what is known.
CREATE OR REPLACE FUNCTION archive_merge_messages() RETURNS trigger
    LANGUAGE plpgsql AS
$function$
BEGIN
    -- The bridge's (nanosecond) time wins over Synapse's millisecond time.
    IF NEW.bridge_rowid IS NULL AND OLD.bridge_rowid IS NOT NULL THEN
        NEW."timestamp" := OLD."timestamp";
    END IF;
    IF NEW.content IS NULL THEN
        NEW.content_raw := coalesce(NEW.content_raw, OLD.content_raw);
        NEW.body := coalesce(NEW.body, OLD.body);
    END IF;
    NEW.content := coalesce(NEW.content, OLD.content);
    NEW.room_id := coalesce(NEW.room_id, OLD.room_id);
    NEW.room_name := coalesce(NEW.room_name, OLD.room_name);
    NEW.sender := coalesce(NEW.sender, OLD.sender);
    NEW.sender_display_name := coalesce(NEW.sender_display_name, OLD.sender_display_name);
    NEW.message_type := coalesce(NEW.message_type, OLD.message_type);
    NEW.original_content := coalesce(NEW.original_content, OLD.original_content);
    NEW.whatsapp_message_id := coalesce(NEW.whatsapp_message_id, OLD.whatsapp_message_id);
    NEW.whatsapp_chat_id := coalesce(NEW.whatsapp_chat_id, OLD.whatsapp_chat_id);
    NEW.whatsapp_sender_id := coalesce(NEW.whatsapp_sender_id, OLD.whatsapp_sender_id);
    NEW.part_id := coalesce(NEW.part_id, OLD.part_id);
    NEW.bridge_id := coalesce(NEW.bridge_id, OLD.bridge_id);
    NEW.bridge_rowid := coalesce(NEW.bridge_rowid, OLD.bridge_rowid);
    NEW.room_type := coalesce(NEW.room_type, OLD.room_type);
    NEW.reply_to_event_id := coalesce(NEW.reply_to_event_id, OLD.reply_to_event_id);
    NEW.thread_root_event_id := coalesce(NEW.thread_root_event_id, OLD.thread_root_event_id);
    NEW.synapse_stream_ordering := coalesce(NEW.synapse_stream_ordering, OLD.synapse_stream_ordering);
    NEW.bridge := coalesce(NEW.bridge, OLD.bridge);
    NEW.network := coalesce(NEW.network, OLD.network);
    NEW.network_message_id := coalesce(NEW.network_message_id, OLD.network_message_id);
    NEW.network_chat_id := coalesce(NEW.network_chat_id, OLD.network_chat_id);
    NEW.network_sender_id := coalesce(NEW.network_sender_id, OLD.network_sender_id);
    -- A record computed before the latest edit we hold (two paths raced: the reconciliation
    -- pass read Synapse just before the edit arrived, the edit path wrote first) must not take
    -- the message back to older content.
    IF OLD.edited_at IS NOT NULL AND (NEW.edited_at IS NULL OR NEW.edited_at < OLD.edited_at) THEN
        NEW.content := OLD.content;
        NEW.content_raw := OLD.content_raw;
        NEW.body := OLD.body;
        NEW.message_type := OLD.message_type;
        NEW.original_content := OLD.original_content;
        NEW.latest_edit_event_id := OLD.latest_edit_event_id;
    END IF;
    NEW.latest_edit_event_id := coalesce(NEW.latest_edit_event_id, OLD.latest_edit_event_id);
    NEW.edit_count := greatest(NEW.edit_count, OLD.edit_count);
    NEW.edited_at := greatest(NEW.edited_at, OLD.edited_at);
    NEW.deleted_at := coalesce(OLD.deleted_at, NEW.deleted_at);
    NEW.redaction_event_id := coalesce(OLD.redaction_event_id, NEW.redaction_event_id);
    NEW.archived_at := OLD.archived_at;
    NEW.updated_at := OLD.updated_at;  -- set by c_touch_updated_at only if something changed
    RETURN NEW;
END
$function$;


CREATE OR REPLACE FUNCTION archive_count_room_messages() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS
$function$
BEGIN
    -- Rooms in a fixed order: two batches touching the same rooms lock them in the same order.
    INSERT INTO room_stats AS s (room_id, message_count, first_message, last_message, room_name,
                                 room_type, bridge, network)
    SELECT n.room_id, count(*), min(n."timestamp"), max(n."timestamp"),
           (array_agg(n.room_name ORDER BY n."timestamp" DESC)
               FILTER (WHERE n.room_name IS NOT NULL))[1],
           (array_agg(n.room_type ORDER BY n."timestamp" DESC)
               FILTER (WHERE n.room_type IS NOT NULL))[1],
           max(n.bridge), max(n.network)
    FROM inserted n
    WHERE n.room_id IS NOT NULL
    GROUP BY n.room_id
    ORDER BY n.room_id
    ON CONFLICT (room_id) DO UPDATE SET
        message_count = s.message_count + EXCLUDED.message_count,
        first_message = least(s.first_message, EXCLUDED.first_message),
        last_message = greatest(s.last_message, EXCLUDED.last_message),
        room_name = CASE WHEN EXCLUDED.last_message >= s.last_message OR s.room_name IS NULL
                         THEN coalesce(EXCLUDED.room_name, s.room_name) ELSE s.room_name END,
        room_type = coalesce(EXCLUDED.room_type, s.room_type),
        bridge = coalesce(s.bridge, EXCLUDED.bridge),
        network = coalesce(s.network, EXCLUDED.network),
        updated_at = now();
    RETURN NULL;
END
$function$;

-- What was archived before this migration came from the one bridge archiver-db knew:
-- mautrix-whatsapp. The triggers stay out of this (no merge to run, and `updated_at` must not
-- move: incremental exports and the media catch-up read it); the migration holds the table's
-- lock, so no write of the running service can slip past a disabled trigger.
LOCK TABLE messages IN SHARE ROW EXCLUSIVE MODE;
ALTER TABLE messages DISABLE TRIGGER USER;
UPDATE messages
SET bridge = 'whatsapp', network = 'whatsapp', network_message_id = whatsapp_message_id,
    network_chat_id = whatsapp_chat_id, network_sender_id = whatsapp_sender_id
WHERE bridge IS NULL;
ALTER TABLE messages ENABLE TRIGGER USER;
UPDATE room_stats SET bridge = 'whatsapp', network = 'whatsapp' WHERE bridge IS NULL;
