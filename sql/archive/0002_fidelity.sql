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

-- Replays are the normal case (at-least-once reads): an upsert that changes nothing must not
-- write a new row version. PostgreSQL's built-in suppress_redundant_updates_trigger drops such
-- updates; triggers fire in name order, so updated_at is touched only when something changed.
CREATE OR REPLACE FUNCTION archive_touch_updated_at() RETURNS trigger
    LANGUAGE plpgsql AS
$function$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END
$function$;

DROP TRIGGER IF EXISTS a_suppress_redundant_updates ON messages;
CREATE TRIGGER a_suppress_redundant_updates BEFORE UPDATE ON messages
    FOR EACH ROW EXECUTE FUNCTION suppress_redundant_updates_trigger();
DROP TRIGGER IF EXISTS b_touch_updated_at ON messages;
CREATE TRIGGER b_touch_updated_at BEFORE UPDATE ON messages
    FOR EACH ROW EXECUTE FUNCTION archive_touch_updated_at();

DROP TRIGGER IF EXISTS a_suppress_redundant_updates ON message_edits;
CREATE TRIGGER a_suppress_redundant_updates BEFORE UPDATE ON message_edits
    FOR EACH ROW EXECUTE FUNCTION suppress_redundant_updates_trigger();
DROP TRIGGER IF EXISTS a_suppress_redundant_updates ON reactions;
CREATE TRIGGER a_suppress_redundant_updates BEFORE UPDATE ON reactions
    FOR EACH ROW EXECUTE FUNCTION suppress_redundant_updates_trigger();
