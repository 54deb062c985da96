-- sink_media_retry_candidates: media rows to try again, least recently tried first.
SELECT id, event_id, mxc_url, kind, status, attempts, room_id, sha256, storage_path
FROM media
WHERE status = ANY($1::text[])
  AND updated_at <= now() - make_interval(secs => $2)
ORDER BY updated_at, id
LIMIT $3
