-- archiver-db archive schema, migration 0006: messages of encrypted rooms (additive, idempotent).
-- Applied to the PostgreSQL sink and to Supabase's database alike. (0005 belongs to a sibling
-- branch; migrate.py applies every file not in its ledger, in name order, so a gap is harmless.)

ALTER TABLE messages
    -- NULL for an event that was never encrypted (or archived without BRIDGE_PICKLE_KEY);
    -- otherwise what decrypting it with the bridge's Megolm sessions gave.
    ADD COLUMN IF NOT EXISTS decryption         TEXT,
    -- The m.room.encrypted content as Synapse holds it (ciphertext, session_id, the cleartext
    -- m.relates_to), kept whatever the outcome: the archive can prove what it decrypted.
    ADD COLUMN IF NOT EXISTS encrypted_content  JSONB,
    -- The Megolm session an undecrypted message waits for (its own, or one of its edits'):
    -- the late-key pass looks these up in the bridge's crypto_megolm_inbound_session.
    ADD COLUMN IF NOT EXISTS megolm_session_id  TEXT,
    -- Why decryption failed, in a few words (never key material): 'room_id mismatch', ...
    ADD COLUMN IF NOT EXISTS decryption_error   TEXT;

DO $check$
BEGIN
    ALTER TABLE messages ADD CONSTRAINT messages_decryption_check
        CHECK (decryption IN ('decrypted', 'no_session', 'withheld', 'bad_key', 'error'));
EXCEPTION WHEN duplicate_object THEN NULL;
END
$check$;

-- The late-key pass and doctor/status read the undecrypted rows only.
CREATE INDEX IF NOT EXISTS messages_undecrypted_idx ON messages (megolm_session_id)
    WHERE decryption IS NOT NULL AND decryption <> 'decrypted';

-- Decrypted plaintext is never replaced by ciphertext: a record computed after the bridge lost
-- the session (delete_keys.*, a reset crypto store) or without the pickle key must not take a
-- decrypted message back to m.room.encrypted. A decrypted message may still wait for a session
-- (one of its edits'): that record is plaintext and goes through. Fires after a_merge (BEFORE
-- triggers run in name order, so message_type is already merged), before
-- b_suppress_redundant_updates.
CREATE OR REPLACE FUNCTION archive_merge_decryption() RETURNS trigger
    LANGUAGE plpgsql AS
$function$
BEGIN
    IF OLD.encrypted_content IS NOT NULL
       AND OLD.message_type IS DISTINCT FROM 'm.room.encrypted'
       AND NEW.message_type = 'm.room.encrypted' THEN
        NEW.content := OLD.content;
        NEW.content_raw := OLD.content_raw;
        NEW.body := OLD.body;
        NEW.message_type := OLD.message_type;
        NEW.original_content := OLD.original_content;
        NEW.reply_to_event_id := coalesce(OLD.reply_to_event_id, NEW.reply_to_event_id);
        NEW.thread_root_event_id := coalesce(OLD.thread_root_event_id, NEW.thread_root_event_id);
        NEW.decryption := OLD.decryption;
        NEW.megolm_session_id := OLD.megolm_session_id;
        NEW.decryption_error := OLD.decryption_error;
    END IF;
    NEW.decryption := coalesce(NEW.decryption, OLD.decryption);
    NEW.encrypted_content := coalesce(NEW.encrypted_content, OLD.encrypted_content);
    IF NEW.decryption = 'decrypted' THEN
        NEW.megolm_session_id := NULL;
        NEW.decryption_error := NULL;
    END IF;
    RETURN NEW;
END
$function$;

DROP TRIGGER IF EXISTS a_merge_decryption ON messages;
CREATE TRIGGER a_merge_decryption BEFORE UPDATE ON messages
    FOR EACH ROW EXECUTE FUNCTION archive_merge_decryption();
