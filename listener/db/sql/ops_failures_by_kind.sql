-- ops_failures_by_kind: unresolved failures per kind, with the oldest, for `archiver-db status`.
SELECT kind, count(*) AS n, min(first_seen) AS oldest
FROM archive_failures
WHERE resolved_at IS NULL
GROUP BY kind
ORDER BY kind
