-- viewer_media_for_events: the media of these messages.
SELECT id, event_id, mxc_url, kind, original_filename, mimetype, size_bytes, width, height,
       duration_ms, status, sha256, storage_path
FROM media
WHERE event_id = ANY($1::text[])
ORDER BY id
