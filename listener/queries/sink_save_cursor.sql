-- sink_save_cursor: the cursor only moves forward here (workers finish out of order).
INSERT INTO archiver_state AS s (name, value, updated_at)
VALUES ($1, jsonb_build_object('rowid', $2::bigint), now())
ON CONFLICT (name) DO UPDATE SET
    value = jsonb_build_object('rowid', greatest((s.value->>'rowid')::bigint, $2::bigint)),
    updated_at = now()
WHERE (s.value->>'rowid')::bigint IS DISTINCT FROM greatest((s.value->>'rowid')::bigint, $2::bigint)
