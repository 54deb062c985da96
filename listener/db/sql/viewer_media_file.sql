-- viewer_media_file: where the bytes of archived media row $1 are (stored rows only).
SELECT id, storage_path, sha256, mimetype, original_filename, size_bytes, kind
FROM media
WHERE id = $1 AND status = 'stored' AND storage_path IS NOT NULL
