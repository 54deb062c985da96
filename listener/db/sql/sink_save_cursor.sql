-- sink_save_cursor: the cursor only moves forward here (workers finish out of order). A NULL
-- cursor writes nothing (so this statement can ride along in the combined batch write).
INSERT INTO archiver_state AS s (name, value, updated_at)
SELECT $1, jsonb_build_object('rowid', $2::bigint), now()
WHERE $2::bigint IS NOT NULL
ON CONFLICT (name) DO UPDATE SET
    value = jsonb_build_object('rowid', greatest((s.value->>'rowid')::bigint, $2::bigint)),
    updated_at = now()
WHERE (s.value->>'rowid')::bigint IS DISTINCT FROM greatest((s.value->>'rowid')::bigint, $2::bigint)
