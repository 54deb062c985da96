-- ops_state: named archiver_state values (cursor, heartbeat) with when they were written.
SELECT name, value::text AS value, updated_at, now() AS db_now
FROM archiver_state
WHERE name = ANY($1::text[])
