-- sink_media_upsert: media rows by (event_id, mxc_url). A stored row is never downgraded by a
-- later outcome (a replay that finds the Synapse file purged keeps the archived copy) and a
-- stored row that would not change is left alone; every other write counts one attempt.
INSERT INTO media AS m (
    event_id, mxc_url, kind, status, status_reason, room_id, original_filename, mimetype,
    size_bytes, sha256, source_sha256, storage_path, width, height, duration_ms, encrypted,
    uploaded_at, attempts
)
SELECT t.*, 1 FROM unnest(
    $1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
    $8::text[], $9::bigint[], $10::text[], $11::text[], $12::text[], $13::integer[],
    $14::integer[], $15::bigint[], $16::boolean[], $17::timestamptz[]
) AS t
ON CONFLICT (event_id, mxc_url) DO UPDATE SET
    kind = EXCLUDED.kind,
    status = EXCLUDED.status,
    status_reason = EXCLUDED.status_reason,
    room_id = coalesce(EXCLUDED.room_id, m.room_id),
    original_filename = coalesce(EXCLUDED.original_filename, m.original_filename),
    mimetype = coalesce(EXCLUDED.mimetype, m.mimetype),
    size_bytes = coalesce(EXCLUDED.size_bytes, m.size_bytes),
    sha256 = coalesce(EXCLUDED.sha256, m.sha256),
    source_sha256 = coalesce(EXCLUDED.source_sha256, m.source_sha256),
    storage_path = coalesce(EXCLUDED.storage_path, m.storage_path),
    width = coalesce(EXCLUDED.width, m.width),
    height = coalesce(EXCLUDED.height, m.height),
    duration_ms = coalesce(EXCLUDED.duration_ms, m.duration_ms),
    encrypted = EXCLUDED.encrypted,
    uploaded_at = coalesce(EXCLUDED.uploaded_at, m.uploaded_at),
    attempts = m.attempts + 1,
    updated_at = now()
WHERE m.status <> 'stored'
   OR (EXCLUDED.status = 'stored'
       AND (m.sha256, m.storage_path) IS DISTINCT FROM (EXCLUDED.sha256, EXCLUDED.storage_path))
