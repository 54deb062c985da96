-- doctor_media_sample: the newest local uploads whose file should be in the media store.
SELECT media_id
FROM local_media_repository
WHERE url_cache IS NULL AND quarantined_by IS NULL AND media_length IS NOT NULL
ORDER BY created_ts DESC
LIMIT $1
