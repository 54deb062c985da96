-- sink_open_failures: unresolved failures of the given kinds, oldest first.
SELECT kind, subject, reason, bridge_rowid, event_id, room_id, detail::text AS detail
FROM archive_failures
WHERE resolved_at IS NULL AND kind = ANY($1::text[])
ORDER BY id
