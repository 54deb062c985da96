-- doctor_columns: the columns of these tables in public, from the catalog (information_schema
-- would hide the columns of a table we may not read).
SELECT c.relname AS table_name, a.attname AS column_name
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public'
  AND c.relname = ANY($1::text[])
  AND c.relkind IN ('r', 'p', 'v')
  AND a.attnum > 0
  AND NOT a.attisdropped
