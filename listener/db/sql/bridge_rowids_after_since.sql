-- bridge_rowids_after_since: the backfill scan limited to messages at or after a time (ns).
SELECT rowid
FROM message
WHERE rowid > $1
  AND bridge_id = $2
  AND timestamp >= $4
ORDER BY rowid
LIMIT $3
