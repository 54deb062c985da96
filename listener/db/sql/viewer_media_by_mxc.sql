-- viewer_media_by_mxc: an archived copy of the media at mxc URL $1 (an image in formatted HTML).
SELECT id, storage_path, sha256, mimetype, original_filename, size_bytes, kind
FROM media
WHERE mxc_url = $1 AND status = 'stored' AND storage_path IS NOT NULL
ORDER BY id
LIMIT 1
