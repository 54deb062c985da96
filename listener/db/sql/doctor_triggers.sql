-- doctor_triggers: every archiver-db trigger, wherever it is (by name, or by our function).
SELECT t.tgname AS name,
       n.nspname AS schema_name,
       c.relname AS table_name,
       t.tgenabled::text AS enabled,
       split_part(encode(t.tgargs, 'escape'), '\000', 1) AS channel,
       (t.tgtype & 4) <> 0 AS on_insert,
       (t.tgtype & 1) = 0 AS per_statement
FROM pg_trigger t
JOIN pg_class c ON c.oid = t.tgrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_proc p ON p.oid = t.tgfoid
JOIN pg_namespace pn ON pn.oid = p.pronamespace
WHERE NOT t.tgisinternal
  AND (t.tgname LIKE 'archiver\_db\_%' OR (pn.nspname = 'archiver_db' AND p.proname = 'notify_rowids'))
ORDER BY t.tgname
