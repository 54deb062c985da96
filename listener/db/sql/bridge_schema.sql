-- bridge_schema: every table and view in public with its columns and whether we may read it,
-- from the catalog (visible without any grant): enough to tell a bridgev2 schema from a legacy
-- one, and the network from the tables its connector creates (listener/core/networks/schema.py).
SELECT c.relname AS table_name,
       coalesce(
           array_agg(a.attname::text ORDER BY a.attnum)
               FILTER (WHERE a.attnum > 0 AND NOT a.attisdropped),
           '{}'
       ) AS columns,
       has_table_privilege(c.oid, 'SELECT') AS readable
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_attribute a ON a.attrelid = c.oid
WHERE n.nspname = 'public'
  AND c.relkind IN ('r', 'p', 'v')
GROUP BY c.oid, c.relname
