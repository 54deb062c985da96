-- archiver-db: the archiver's own role, with exactly the privileges it needs in one database.
--
-- Run it once per database, as that database's owner (or a superuser), with `target` saying
-- which database this is. The role is created when missing (roles are per server: a second run
-- on the same server reuses it) and its password set when `password` is given. Re-running is
-- harmless, and it also takes back anything granted to the role since (in schema public).
--
--     psql -v ON_ERROR_STOP=1 -d mautrix_whatsapp -v target=bridge  -v role=archiver \
--          -v password="$ARCHIVER_PASSWORD" -f sql/grants.sql
--     psql -v ON_ERROR_STOP=1 -d mautrix_whatsapp -v target=bridge  -v role=archiver -v e2ee=on \
--          -f sql/grants.sql          # also decrypt encrypted portals (BRIDGE_PICKLE_KEY)
--     psql -v ON_ERROR_STOP=1 -d synapse          -v target=synapse -v role=archiver -f sql/grants.sql
--     psql -v ON_ERROR_STOP=1 -d archive          -v target=archive -v role=archiver -f sql/grants.sql
--     psql -v ON_ERROR_STOP=1 -d archive          -v target=viewer  -v role=archive_viewer \
--          -v password="$VIEWER_DB_PASSWORD" -f sql/grants.sql
--
-- bridge:  SELECT on message, portal, ghost, reaction. Nothing else: not `user` (access tokens),
--          not user_login, kv_store or crypto_* (keys). The NOTIFY trigger is NOT installed here:
--          installing it needs ownership of public.message, so the bridge database owner runs
--          sql/triggers.sql. LISTEN needs no privilege.
--          With -v e2ee=on, also SELECT on crypto_megolm_inbound_session (the Megolm sessions
--          that decrypt encrypted portals; mautrix-go crypto/sql_store.go) and nothing else of
--          crypto_*: never crypto_account or crypto_olm_session, which could impersonate the
--          bridge's device.
-- synapse: SELECT on the event, room, membership and media tables the archiver reads.
-- archive: SELECT, INSERT, UPDATE on every archive table (no DELETE, no TRUNCATE), SELECT on the
--          migrations ledger, USAGE on the id sequences; the same for tables later migrations
--          create as the user running this. Run it after `archiver-db migrate`, which the archive
--          owner runs (the archiver's role cannot create tables).
-- viewer:  SELECT on every archive table and nothing else, for `archiver-db serve` and
--          `export` (run on the archive database, with a role of its own: the viewer never
--          needs to write, so a bug in it cannot change the archive).
--
-- The password travels in a statement: pass an already hashed one ('SCRAM-SHA-256$...', e.g. from
-- `\password` on a scratch role) if statements are logged on this server.

\set ON_ERROR_STOP on
\if :{?role}
\else
    \set role archiver
\endif
\if :{?target}
\else
    \set target missing
\endif
\if :{?e2ee}
\else
    \set e2ee off
\endif
SELECT :'target' = 'bridge' AS is_bridge,
       :'target' = 'synapse' AS is_synapse,
       :'target' = 'archive' AS is_archive,
       :'target' = 'viewer' AS is_viewer,
       :'target' IN ('bridge', 'synapse', 'archive', 'viewer') AS target_ok,
       :'target' = 'bridge' AND :'e2ee' = 'on' AS bridge_e2ee,
       :'e2ee' IN ('on', 'off') AS e2ee_ok \gset
\if :e2ee_ok
\else
    \echo 'grants.sql: -v e2ee=on or -v e2ee=off (the default)'
    SELECT 1 / 0 AS e2ee_on_or_off;
\endif
\if :target_ok
\else
    \echo 'grants.sql: set -v target=bridge, synapse, archive or viewer'
    SELECT 1 / 0 AS target_required;
\endif

BEGIN;

-- psql does not interpolate inside dollar-quoted bodies: hand the values over as settings,
-- local to this transaction.
SELECT set_config('archiver_grants.role', :'role', true) IS NOT NULL AS role_set \gset
\if :{?password}
SELECT set_config('archiver_grants.password', :'password', true) IS NOT NULL AS password_set \gset
\endif

DO $grants$
DECLARE
    role_name text := current_setting('archiver_grants.role');
    new_password text := current_setting('archiver_grants.password', true);
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = role_name) THEN
        EXECUTE format('CREATE ROLE %I LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT',
                       role_name);
        RAISE NOTICE 'created role %', role_name;
    END IF;
    IF coalesce(new_password, '') <> '' THEN
        EXECUTE format('ALTER ROLE %I PASSWORD %L', role_name, new_password);
    END IF;
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO %I', current_database(), role_name);
END
$grants$;

-- Start from nothing in public, so that what follows is exactly what the role holds there.
REVOKE ALL ON ALL TABLES IN SCHEMA public FROM :"role";
REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM :"role";
GRANT USAGE ON SCHEMA public TO :"role";

\if :is_bridge
GRANT SELECT ON public.message, public.portal, public.ghost, public.reaction TO :"role";
\if :bridge_e2ee
GRANT SELECT ON public.crypto_megolm_inbound_session TO :"role";
\endif
\elif :is_synapse
GRANT SELECT ON
    public.events, public.event_json, public.event_relations, public.redactions,
    public.rejections, public.rooms, public.room_memberships, public.current_state_events,
    public.room_stats_state,
    public.local_media_repository, public.local_media_repository_thumbnails,
    public.remote_media_cache, public.remote_media_cache_thumbnails
TO :"role";
\elif :is_archive
GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA public TO :"role";
REVOKE INSERT, UPDATE ON public.archive_schema_migrations FROM :"role";
GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO :"role";
-- Tables and sequences that later migrations create (when run by this same owner).
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE ON TABLES TO :"role";
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE ON SEQUENCES TO :"role";
\elif :is_viewer
GRANT SELECT ON ALL TABLES IN SCHEMA public TO :"role";
-- Tables that later migrations create (when run by this same owner) are readable too.
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO :"role";
\endif

COMMIT;
