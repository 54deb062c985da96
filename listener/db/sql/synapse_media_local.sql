-- synapse_media_local: what Synapse knows about a batch of local uploads, by media ID.
-- media_length NULL = an async upload whose bytes have not arrived yet.
SELECT media_id,
       media_type,
       media_length,
       created_ts,
       upload_name,
       quarantined_by IS NOT NULL AS quarantined,
       url_cache IS NOT NULL AS url_cache,
       sha256
FROM local_media_repository
WHERE media_id = ANY($1::text[])
