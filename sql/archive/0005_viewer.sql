-- 0005: what the viewer (`archiver-db serve`) and `export` read fast at any size.
--
-- 1. Full-text search in any language: the `simple` parser and dictionary (no stemming, no stop
--    words: chats mix languages) with accents folded by `unaccent` where the server has it, so
--    "cafe" finds "café". A missing or forbidden `unaccent` leaves search without folding
--    rather than failing the migration. The index is on an expression, not a stored column, so
--    the table is not rewritten and the write path stores nothing more.
-- 2. A chat's page is a keyset scan of (room_id, "timestamp", Synapse's stream ordering,
--    event_id). WhatsApp times have one-second resolution, so a question and its answer often
--    share a timestamp: Synapse's stream ordering keeps them in the order the room saw them
--    (0 for a message Synapse never had), and the event ID makes every key unique, so paging
--    never skips or repeats one. It replaces the two-column index, whose readers this one serves.
-- 3. room_stats: each room's message count and first/last message time, kept by a statement
--    trigger from the rows each INSERT statement actually inserted (a transition table: one
--    aggregate per batch, not per row), so the chat list does not count millions of rows.

DO $search$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_ts_config WHERE cfgname = 'archive_search') THEN
        CREATE TEXT SEARCH CONFIGURATION archive_search (COPY = pg_catalog.simple);
    END IF;
    BEGIN
        CREATE EXTENSION IF NOT EXISTS unaccent;
        ALTER TEXT SEARCH CONFIGURATION archive_search
            ALTER MAPPING FOR hword, hword_part, word WITH unaccent, simple;
    EXCEPTION WHEN OTHERS THEN
        RAISE NOTICE 'unaccent is not available (%): search will not fold accents', SQLERRM;
    END;
END
$search$;

-- The searchable text of a message: what it says now and what it said first (an edit does not
-- hide the original from search).
CREATE OR REPLACE FUNCTION archive_search_text(body text, original_content jsonb)
    RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN coalesce(body, '') || ' ' || coalesce(original_content ->> 'body', '');

CREATE INDEX IF NOT EXISTS messages_search_idx ON messages
    USING gin (to_tsvector('archive_search'::regconfig, archive_search_text(body, original_content)));

-- Search across all chats, newest first, looks at the newest week, then 8 weeks, then ... (see
-- listener/viewer/reader.py): each step intersects the search index's matches with this
-- index's time range, so a common word costs a week's matches, not the whole history's.
CREATE INDEX IF NOT EXISTS messages_time_idx ON messages ("timestamp");

-- An image in a message's HTML names its mxc URL; the viewer finds the archived copy by it.
CREATE INDEX IF NOT EXISTS media_mxc_idx ON media (mxc_url);

CREATE INDEX IF NOT EXISTS messages_room_order_idx
    ON messages (room_id, "timestamp", (coalesce(synapse_stream_ordering, 0)), event_id);
DROP INDEX IF EXISTS messages_room_time_idx;

CREATE TABLE IF NOT EXISTS room_stats (
    room_id        TEXT PRIMARY KEY,
    message_count  BIGINT NOT NULL DEFAULT 0,
    first_message  TIMESTAMPTZ,
    last_message   TIMESTAMPTZ,
    room_name      TEXT,
    room_type      TEXT,
    updated_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- SECURITY DEFINER: the archiver's role writes messages; the statistics are the schema owner's
-- bookkeeping, so a role that may insert messages never fails for want of a grant here.
CREATE OR REPLACE FUNCTION archive_count_room_messages() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS
$function$
BEGIN
    -- Rooms in a fixed order: two batches touching the same rooms lock them in the same order.
    INSERT INTO room_stats AS s (room_id, message_count, first_message, last_message, room_name,
                                 room_type)
    SELECT n.room_id, count(*), min(n."timestamp"), max(n."timestamp"),
           (array_agg(n.room_name ORDER BY n."timestamp" DESC)
               FILTER (WHERE n.room_name IS NOT NULL))[1],
           (array_agg(n.room_type ORDER BY n."timestamp" DESC)
               FILTER (WHERE n.room_type IS NOT NULL))[1]
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
        updated_at = now();
    RETURN NULL;
END
$function$;

DROP TRIGGER IF EXISTS z_count_room_messages ON messages;
CREATE TRIGGER z_count_room_messages
    AFTER INSERT ON messages
    REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION archive_count_room_messages();

-- The history already archived. The migration runs in one transaction that holds the table's
-- lock from here on, so no insert can be counted twice or missed.
LOCK TABLE messages IN SHARE MODE;
INSERT INTO room_stats (room_id, message_count, first_message, last_message, room_name, room_type)
SELECT m.room_id, count(*), min(m."timestamp"), max(m."timestamp"),
       (array_agg(m.room_name ORDER BY m."timestamp" DESC)
           FILTER (WHERE m.room_name IS NOT NULL))[1],
       (array_agg(m.room_type ORDER BY m."timestamp" DESC)
           FILTER (WHERE m.room_type IS NOT NULL))[1]
FROM messages m
WHERE m.room_id IS NOT NULL
GROUP BY m.room_id
ON CONFLICT (room_id) DO UPDATE SET
    message_count = EXCLUDED.message_count,
    first_message = EXCLUDED.first_message,
    last_message = EXCLUDED.last_message,
    room_name = EXCLUDED.room_name,
    room_type = EXCLUDED.room_type,
    updated_at = now();
