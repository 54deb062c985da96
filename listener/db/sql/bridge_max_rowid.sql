-- bridge_max_rowid: the newest rowid, for the lag metric and backfill progress.
SELECT coalesce(max(rowid), 0) AS max_rowid FROM message
