-- bridge_trigger_status: our NOTIFY triggers on public.message, whether enabled, and the
-- channel each notifies (its first trigger argument).
SELECT t.tgname AS name,
       t.tgenabled <> 'D' AS enabled,
       split_part(encode(t.tgargs, 'escape'), '\000', 1) AS channel
FROM pg_trigger t
JOIN pg_class c ON c.oid = t.tgrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public'
  AND c.relname = 'message'
  AND t.tgname LIKE 'archiver\_db\_%'
  AND NOT t.tgisinternal
