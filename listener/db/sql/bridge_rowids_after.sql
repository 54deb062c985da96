-- bridge_rowids_after: the sweep's scan. Rowids only (an index-only scan of the primary key);
-- the workers fetch the rows themselves.
SELECT rowid
FROM message
WHERE rowid > $1
  AND bridge_id = $2
ORDER BY rowid
LIMIT $3
