-- sink_media_states: existing media rows for a batch of (event_id, mxc_url) keys.
SELECT m.id, m.event_id, m.mxc_url, m.kind, m.status, m.attempts, m.room_id, m.sha256, m.storage_path
FROM media m
JOIN unnest($1::text[], $2::text[]) AS k (event_id, mxc_url)
  ON m.event_id = k.event_id AND m.mxc_url = k.mxc_url
