-- archiver-db: wake-up notifications for new bridge messages.
--
-- What: installs schema archiver_db, the functions archiver_db.notify_rowids() and
-- archiver_db.notify_table(), and statement-level triggers; the main one,
-- archiver_db_message_insert, runs AFTER INSERT ON public.message. For every
-- INSERT statement that inserted at least one row, the trigger sends ONE notification on the
-- channel (default archiver_db) with the rowids the statement inserted, as inclusive ranges of
-- consecutive rowids (contract: docs/ARCHITECTURE.md):
--     {"v":1,"table":"message","op":"INSERT","ranges":[[lo,hi],...]}
-- When that list would exceed 1000 ranges or ~7900 bytes it collapses to one covering range
-- [[min,max]]; the consumer re-reads by range, and NOTIFY is only a hint (the sweep finds the rest).
--
-- Safety: the function catches every error and only RAISEs a WARNING, so it can never make the
-- bridge's INSERT fail. It also skips the NOTIFY while the server's notification queue is more
-- than half full, because a full queue fails the bridge's COMMIT (outside any trigger's reach).
-- Nothing is written to any table.
--
-- Who runs it: the owner of the bridge database (or of public.message), once, and again after
-- upgrading archiver-db (re-running is harmless: one transaction, replace function, recreate
-- trigger):
--     psql -v ON_ERROR_STOP=1 -d <bridge db> -f sql/triggers.sql
--     psql -v ON_ERROR_STOP=1 -d <bridge db> -v channel=my_channel -f sql/triggers.sql
-- `archiver-db` installs the same file through listener/schema/sqlfiles.py (keep to the psql
-- meta-commands that file understands: \set, \if, \elif, \else, \endif).
--
-- Uninstall: psql -v ON_ERROR_STOP=1 -d <bridge db> -f sql/uninstall_triggers.sql
--
-- Edits and deletions: the bridge applies a WhatsApp edit by UPDATEing the message row in place
-- and a deletion by DELETEing it (reactions go with it by cascade), so the same function also
-- runs AFTER UPDATE and AFTER DELETE on public.message (op "UPDATE"/"DELETE", the rowids
-- touched), and archiver_db.notify_table() sends a bare wake-up for the reaction table, which
-- has no rowid ({"v":1,"table":"reaction","op":"INSERT","ranges":[]}). All statement-level:
-- one notification per statement, whatever the row count. Edits and deletions are rare next to
-- inserts, so these cost the bridge next to nothing.

\set ON_ERROR_STOP on
\if :{?channel}
\else
    \set channel archiver_db
\endif

BEGIN;

-- DROP TRIGGER takes an ACCESS EXCLUSIVE lock on public.message: give up rather than queue
-- behind a long bridge transaction while every new bridge INSERT queues behind us.
SET LOCAL lock_timeout = '5s';

CREATE SCHEMA IF NOT EXISTS archiver_db;
COMMENT ON SCHEMA archiver_db IS
    'archiver-db: NOTIFY triggers and read-only views (sql/triggers.sql, sql/views.sql)';

CREATE OR REPLACE FUNCTION archiver_db.notify_rowids()
    RETURNS trigger
    LANGUAGE plpgsql
    -- Nothing here lives in public; pg_temp last so a temporary object cannot shadow anything.
    SET search_path = pg_catalog, pg_temp
AS $function$
-- Trigger argument 0: the NOTIFY channel (psql does not interpolate inside this body).
DECLARE
    max_ranges CONSTANT integer := 1000;  -- listener/core/payload.py MAX_RANGES
    max_bytes CONSTANT integer := 7900;   -- PostgreSQL rejects payloads of 8000 bytes or more
    channel text := coalesce(TG_ARGV[0], 'archiver_db');
    ranges text;
    n_ranges bigint;
    lo bigint;
    hi bigint;
    head text;
BEGIN
    -- Transition tables are statement-scoped relations: only the one the firing trigger declared
    -- exists, so each branch names its own (plpgsql plans a statement when it first runs it).
    -- Fast path first: one pass for count/min/max. When the rowids form one consecutive run (every
    -- single-row INSERT, and multi-row ones that did not interleave) that is the whole payload;
    -- only otherwise run the island query (dense_rank rather than row_number, so a repeated
    -- rowid cannot split an island).
    IF TG_OP = 'DELETE' THEN
        SELECT count(*), min(rowid), max(rowid) INTO n_ranges, lo, hi FROM old_rows;
    ELSE
        SELECT count(*), min(rowid), max(rowid) INTO n_ranges, lo, hi FROM new_rows;
    END IF;
    IF n_ranges > 0 AND hi - lo + 1 = n_ranges THEN
        ranges := '[' || lo || ',' || hi || ']';
        n_ranges := 1;
    ELSIF n_ranges > 0 AND TG_OP = 'DELETE' THEN
        SELECT string_agg('[' || i.lo || ',' || i.hi || ']', ',' ORDER BY i.lo),
               count(*), min(i.lo), max(i.hi)
          INTO ranges, n_ranges, lo, hi
          FROM (SELECT min(rowid) AS lo, max(rowid) AS hi
                  FROM (SELECT rowid, rowid - dense_rank() OVER (ORDER BY rowid) AS island
                          FROM old_rows) AS r
                 GROUP BY island) AS i;
    ELSIF n_ranges > 0 THEN
        SELECT string_agg('[' || i.lo || ',' || i.hi || ']', ',' ORDER BY i.lo),
               count(*), min(i.lo), max(i.hi)
          INTO ranges, n_ranges, lo, hi
          FROM (SELECT min(rowid) AS lo, max(rowid) AS hi
                  FROM (SELECT rowid, rowid - dense_rank() OVER (ORDER BY rowid) AS island
                          FROM new_rows) AS r
                 GROUP BY island) AS i;
    END IF;

    IF n_ranges = 0 THEN
        RETURN NULL;  -- e.g. INSERT ... SELECT of nothing, ON CONFLICT DO NOTHING
    END IF;

    head := '{"v":1,"table":' || to_json(TG_TABLE_NAME::text) || ',"op":' || to_json(TG_OP::text)
            || ',"ranges":[';
    IF n_ranges > max_ranges OR octet_length(head) + octet_length(ranges) + 2 > max_bytes THEN
        ranges := '[' || lo || ',' || hi || ']';
    END IF;

    IF pg_notification_queue_usage() > 0.5 THEN
        RAISE WARNING 'archiver_db: NOTIFY queue is over half full (is a listener stuck in a '
                      'transaction?); not notifying % on %.% rowids %..%',
                      TG_OP, TG_TABLE_SCHEMA, TG_TABLE_NAME, lo, hi;
        RETURN NULL;
    END IF;

    PERFORM pg_notify(channel, head || ranges || ']}');
    RETURN NULL;
EXCEPTION WHEN OTHERS THEN
    -- Never fail the bridge's statement: the archiver's sweep will find the rows anyway. The
    -- block is a subtransaction, but one without an XID (it writes nothing), so it is cheap.
    RAISE WARNING 'archiver_db: % trigger on %.% could not notify: % (SQLSTATE %)',
                  TG_OP, TG_TABLE_SCHEMA, TG_TABLE_NAME, SQLERRM, SQLSTATE;
    RETURN NULL;
END
$function$;

COMMENT ON FUNCTION archiver_db.notify_rowids() IS
    'archiver-db: NOTIFY TG_ARGV[0] with the rowid ranges a statement touched (sql/triggers.sql)';

CREATE OR REPLACE FUNCTION archiver_db.notify_table()
    RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $function$
-- A wake-up without rowids, for tables that have none (reaction). Trigger argument 0: channel.
BEGIN
    IF pg_notification_queue_usage() > 0.5 THEN
        RETURN NULL;
    END IF;
    PERFORM pg_notify(coalesce(TG_ARGV[0], 'archiver_db'),
                      '{"v":1,"table":' || to_json(TG_TABLE_NAME::text) || ',"op":'
                      || to_json(TG_OP::text) || ',"ranges":[]}');
    RETURN NULL;
EXCEPTION WHEN OTHERS THEN
    RAISE WARNING 'archiver_db: % trigger on %.% could not notify: % (SQLSTATE %)',
                  TG_OP, TG_TABLE_SCHEMA, TG_TABLE_NAME, SQLERRM, SQLSTATE;
    RETURN NULL;
END
$function$;

COMMENT ON FUNCTION archiver_db.notify_table() IS
    'archiver-db: NOTIFY TG_ARGV[0] that a statement changed a table (sql/triggers.sql)';

DROP TRIGGER IF EXISTS archiver_db_message_insert ON public.message;
CREATE TRIGGER archiver_db_message_insert
    AFTER INSERT ON public.message
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT
    EXECUTE FUNCTION archiver_db.notify_rowids(:'channel');

-- Edits (and portal re-IDs, which cascade into message.room_id).
DROP TRIGGER IF EXISTS archiver_db_message_update ON public.message;
CREATE TRIGGER archiver_db_message_update
    AFTER UPDATE ON public.message
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT
    EXECUTE FUNCTION archiver_db.notify_rowids(:'channel');

-- Deletions (revoke, delete-for-me, Matrix redactions, chat deletions by cascade).
DROP TRIGGER IF EXISTS archiver_db_message_delete ON public.message;
CREATE TRIGGER archiver_db_message_delete
    AFTER DELETE ON public.message
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT
    EXECUTE FUNCTION archiver_db.notify_rowids(:'channel');

DROP TRIGGER IF EXISTS archiver_db_reaction_change ON public.reaction;
CREATE TRIGGER archiver_db_reaction_change
    AFTER INSERT OR UPDATE OR DELETE ON public.reaction
    FOR EACH STATEMENT
    EXECUTE FUNCTION archiver_db.notify_table(:'channel');

COMMIT;
