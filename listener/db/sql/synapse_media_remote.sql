-- synapse_media_remote: a batch of cached remote media by (origin, media ID). The file is
-- named by filesystem_id, not by the media ID.
SELECT r.media_origin,
       r.media_id,
       r.media_type,
       r.media_length,
       r.created_ts,
       r.upload_name,
       r.filesystem_id,
       r.quarantined_by IS NOT NULL AS quarantined,
       r.sha256
FROM remote_media_cache r
JOIN unnest($1::text[], $2::text[]) AS k (origin, media_id)
  ON r.media_origin = k.origin AND r.media_id = k.media_id
