-- sink_upsert_failures: record (or re-record) failures; a repeat bumps attempts and reopens.
INSERT INTO archive_failures AS f (kind, subject, reason, bridge_rowid, event_id, room_id, detail)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::text[],
                     $7::jsonb[])
ON CONFLICT (kind, subject) DO UPDATE SET
    reason = EXCLUDED.reason,
    detail = EXCLUDED.detail,
    attempts = f.attempts + 1,
    last_seen = now(),
    resolved_at = NULL
