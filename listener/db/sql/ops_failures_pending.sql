-- ops_failures_pending: unresolved failures, for the archiver_failures_pending gauge.
SELECT count(*) AS n FROM archive_failures WHERE resolved_at IS NULL
