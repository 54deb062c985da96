-- archiver-db archive schema, migration 0002: edits, deletions and reactions kept on record.
-- Additive and idempotent, like every migration.

ALTER TABLE messages
    -- The event's own content when edits replaced what `content` shows (the latest edit's
    -- m.new_content); NULL for a message never edited.
    ADD COLUMN IF NOT EXISTS original_content      JSONB,
    ADD COLUMN IF NOT EXISTS edit_count            INTEGER NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS edited_at             TIMESTAMPTZ,
    ADD COLUMN IF NOT EXISTS latest_edit_event_id  TEXT,
    -- Set when the message was deleted (WhatsApp revoke or delete-for-me, a Matrix redaction):
    -- the archive keeps the message, its content and its media.
    ADD COLUMN IF NOT EXISTS deleted_at            TIMESTAMPTZ,
    ADD COLUMN IF NOT EXISTS redaction_event_id    TEXT,
    ADD COLUMN IF NOT EXISTS synapse_stream_ordering BIGINT;

CREATE INDEX IF NOT EXISTS messages_deleted_idx ON messages (deleted_at) WHERE deleted_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS messages_reply_to_idx ON messages (reply_to_event_id)
    WHERE reply_to_event_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS messages_thread_root_idx ON messages (thread_root_event_id)
    WHERE thread_root_event_id IS NOT NULL;

-- Every version a message went through: one row per m.replace edit event.
CREATE TABLE IF NOT EXISTS message_edits (
    edit_event_id     TEXT PRIMARY KEY,
    message_event_id  TEXT NOT NULL,
    edit_number       INTEGER NOT NULL,
    sender            TEXT,
    new_content       JSONB,
    content_raw       TEXT,
    body              TEXT,
    edited_at         TIMESTAMPTZ NOT NULL,
    archived_at       TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS message_edits_message_idx ON message_edits (message_event_id, edit_number);

CREATE TABLE IF NOT EXISTS reactions (
    reaction_event_id   TEXT PRIMARY KEY,
    message_event_id    TEXT NOT NULL,
    room_id             TEXT,
    sender              TEXT,
    emoji               TEXT,
    "timestamp"         TIMESTAMPTZ NOT NULL,
    removed_at          TIMESTAMPTZ,
    redaction_event_id  TEXT,
    archived_at         TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS reactions_message_idx ON reactions (message_event_id);

-- The merge rules live here, in the schema both sinks share, so that a plain upsert (the
-- PostgreSQL sink's INSERT ... ON CONFLICT, PostgREST's merge-duplicates for Supabase) converges
-- to the same row whatever order replays arrive in: what is known is never blanked (a record
-- from Synapse alone lacks the bridge's IDs; a redacted event's pruned content is no content),
-- a deletion is never undone, the edit count never goes down, archived_at never moves.
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

CREATE OR REPLACE FUNCTION archive_merge_message_edits() RETURNS trigger
    LANGUAGE plpgsql AS
$function$
BEGIN
    NEW.new_content := coalesce(NEW.new_content, OLD.new_content);
    NEW.content_raw := coalesce(NEW.content_raw, OLD.content_raw);
    NEW.body := coalesce(NEW.body, OLD.body);
    NEW.sender := coalesce(NEW.sender, OLD.sender);
    NEW.archived_at := OLD.archived_at;
    RETURN NEW;
END
$function$;

CREATE OR REPLACE FUNCTION archive_merge_reactions() RETURNS trigger
    LANGUAGE plpgsql AS
$function$
BEGIN
    NEW.emoji := coalesce(NEW.emoji, OLD.emoji);
    NEW.room_id := coalesce(NEW.room_id, OLD.room_id);
    NEW.sender := coalesce(NEW.sender, OLD.sender);
    NEW.removed_at := coalesce(OLD.removed_at, NEW.removed_at);
    NEW.redaction_event_id := coalesce(OLD.redaction_event_id, NEW.redaction_event_id);
    NEW.archived_at := OLD.archived_at;
    RETURN NEW;
END
$function$;

-- Replays are the normal case (at-least-once reads): an upsert that changes nothing must not
-- write a new row version. PostgreSQL's built-in suppress_redundant_updates_trigger drops such
-- updates. BEFORE triggers fire in name order: merge, then suppress, then touch updated_at.
CREATE OR REPLACE FUNCTION archive_touch_updated_at() RETURNS trigger
    LANGUAGE plpgsql AS
$function$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END
$function$;

DROP TRIGGER IF EXISTS a_merge ON messages;
CREATE TRIGGER a_merge BEFORE UPDATE ON messages
    FOR EACH ROW EXECUTE FUNCTION archive_merge_messages();
DROP TRIGGER IF EXISTS b_suppress_redundant_updates ON messages;
CREATE TRIGGER b_suppress_redundant_updates BEFORE UPDATE ON messages
    FOR EACH ROW EXECUTE FUNCTION suppress_redundant_updates_trigger();
DROP TRIGGER IF EXISTS c_touch_updated_at ON messages;
CREATE TRIGGER c_touch_updated_at BEFORE UPDATE ON messages
    FOR EACH ROW EXECUTE FUNCTION archive_touch_updated_at();

DROP TRIGGER IF EXISTS a_merge ON message_edits;
CREATE TRIGGER a_merge BEFORE UPDATE ON message_edits
    FOR EACH ROW EXECUTE FUNCTION archive_merge_message_edits();
DROP TRIGGER IF EXISTS b_suppress_redundant_updates ON message_edits;
CREATE TRIGGER b_suppress_redundant_updates BEFORE UPDATE ON message_edits
    FOR EACH ROW EXECUTE FUNCTION suppress_redundant_updates_trigger();

DROP TRIGGER IF EXISTS a_merge ON reactions;
CREATE TRIGGER a_merge BEFORE UPDATE ON reactions
    FOR EACH ROW EXECUTE FUNCTION archive_merge_reactions();
DROP TRIGGER IF EXISTS b_suppress_redundant_updates ON reactions;
CREATE TRIGGER b_suppress_redundant_updates BEFORE UPDATE ON reactions
    FOR EACH ROW EXECUTE FUNCTION suppress_redundant_updates_trigger();
