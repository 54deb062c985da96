-- archiver-db: remove what sql/triggers.sql installed from the bridge database.
--
-- Drops the NOTIFY trigger(s) on public.message and archiver_db.notify_rowids(), then the
-- archiver_db schema if nothing else (e.g. the views of sql/views.sql) is left in it. Bridge
-- tables and rows are untouched. Idempotent: safe to run when nothing is installed.
--
-- Who runs it: the owner of the bridge database:
--     psql -v ON_ERROR_STOP=1 -d <bridge db> -f sql/uninstall_triggers.sql

\set ON_ERROR_STOP on

BEGIN;

-- Same reason as in triggers.sql: do not queue an ACCESS EXCLUSIVE lock in front of the bridge.
SET LOCAL lock_timeout = '5s';

DROP TRIGGER IF EXISTS archiver_db_message_insert ON public.message;
DROP TRIGGER IF EXISTS archiver_db_message_update ON public.message;
DROP TRIGGER IF EXISTS archiver_db_message_delete ON public.message;
DROP TRIGGER IF EXISTS archiver_db_reaction_change ON public.reaction;
DROP FUNCTION IF EXISTS archiver_db.notify_rowids();
DROP FUNCTION IF EXISTS archiver_db.notify_table();

DO $uninstall$
BEGIN
    DROP SCHEMA IF EXISTS archiver_db;  -- RESTRICT: keeps the schema while anything is in it
EXCEPTION WHEN dependent_objects_still_exist THEN
    RAISE NOTICE 'archiver_db: schema archiver_db kept, it still holds other objects (views?)';
END
$uninstall$;

COMMIT;
