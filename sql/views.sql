-- archiver-db: read-only convenience views in the bridge database (schema archiver_db).
--
-- archiver_db.v_messages_enriched: one row per message part with its chat and sender. LEFT joins
-- on the bridge's real keys, (bridge_id, room_id, room_receiver) -> portal and
-- (bridge_id, sender_id) -> ghost, so a row never disappears from the view for want of a portal
-- or ghost. message_time keeps sub-second precision (message.timestamp is Unix nanoseconds).
-- The archiver itself does not read these views; they are for people querying by hand.
--
-- Who runs it: the owner of the bridge database; idempotent (CREATE OR REPLACE):
--     psql -v ON_ERROR_STOP=1 -d <bridge db> -f sql/views.sql
-- A view runs with its owner's rights, so a reader needs only:
--     GRANT USAGE ON SCHEMA archiver_db TO <reader>;
--     GRANT SELECT ON archiver_db.v_messages_enriched TO <reader>;
-- Remove: DROP VIEW IF EXISTS archiver_db.v_messages_enriched; (then uninstall_triggers.sql
-- drops the schema once it is empty).

\set ON_ERROR_STOP on

BEGIN;

CREATE SCHEMA IF NOT EXISTS archiver_db;

-- CREATE OR REPLACE VIEW can only append columns: add new ones at the end.
CREATE OR REPLACE VIEW archiver_db.v_messages_enriched AS
SELECT
    m.rowid,
    m.id AS whatsapp_id,
    m.mxid AS matrix_event_id,
    m.room_id AS whatsapp_room_id,
    p.mxid AS matrix_room_id,
    p.name AS room_name,
    p.room_type,
    m.sender_id AS whatsapp_sender_id,
    m.sender_mxid AS matrix_sender_id,
    NULLIF(g.name, '') AS sender_name,
    g.identifiers AS sender_identifiers,
    to_timestamp(m.timestamp / 1e9) AS message_time,
    m.reply_to_id,
    m.thread_root_id,
    m.metadata
FROM public.message AS m
LEFT JOIN public.portal AS p
    ON p.bridge_id = m.bridge_id AND p.id = m.room_id AND p.receiver = m.room_receiver
LEFT JOIN public.ghost AS g
    ON g.bridge_id = m.bridge_id AND g.id = m.sender_id;

COMMENT ON VIEW archiver_db.v_messages_enriched IS
    'archiver-db: message parts with chat and sender (sql/views.sql)';

COMMIT;
