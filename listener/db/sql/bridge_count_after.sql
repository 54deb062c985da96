-- bridge_count_after: how many rows a backfill will go through (for its progress bar).
SELECT count(*) AS n
FROM message
WHERE rowid > $1
  AND bridge_id = $2
  AND ($3::bigint IS NULL OR timestamp >= $3::bigint)
