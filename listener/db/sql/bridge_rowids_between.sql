-- bridge_rowids_between: the rows a notification's range may refer to. The range is only a hint
-- (anyone may NOTIFY): this reads the rowids that exist inside it, a page at a time (keyset),
-- so the work is proportional to the rows, never to the width of the range.
SELECT rowid
FROM message
WHERE rowid >= $1
  AND rowid <= $2
  AND bridge_id = $3
ORDER BY rowid
LIMIT $4
