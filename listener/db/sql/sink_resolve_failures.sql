-- sink_resolve_failures: the subjects (event IDs) were archived after all.
UPDATE archive_failures SET resolved_at = now()
WHERE subject = ANY($1::text[]) AND resolved_at IS NULL
