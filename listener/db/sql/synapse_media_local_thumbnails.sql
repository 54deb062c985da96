-- synapse_media_local_thumbnails: the thumbnails Synapse generated for a batch of local uploads.
SELECT media_id,
       thumbnail_width,
       thumbnail_height,
       thumbnail_type,
       thumbnail_method,
       thumbnail_length
FROM local_media_repository_thumbnails
WHERE media_id = ANY($1::text[])
ORDER BY media_id, thumbnail_width * thumbnail_height DESC, thumbnail_method
