-- bridge_rowids_after_snapshot: the sweep's scan (rowids only, an index-only scan of the primary
-- key) and, from the same statement, the snapshot it read under. pg_current_snapshot() is the
-- statement's own snapshot, so "every row committed under it in (after, last rowid] is here"
-- holds, which is what settles a rowid gap for good (listener/core/tracker.py).
SELECT coalesce(
           (SELECT array_agg(rowid ORDER BY rowid)
            FROM (SELECT rowid
                  FROM message
                  WHERE rowid > $1
                    AND bridge_id = $2
                  ORDER BY rowid
                  LIMIT $3) AS page),
           '{}'::bigint[]) AS rowids,
       pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS xmin,
       pg_snapshot_xmax(pg_current_snapshot())::text::bigint AS xmax
