-- sink_media_ensure_jobs: one pending analysis job per stored media row, at most one per
-- content and job type (analysis_jobs_sha256_type_key); replays create nothing.
INSERT INTO analysis_jobs (media_id, event_id, job_type, status, sha256)
SELECT m.id, m.event_id, $2, 'pending', m.sha256
FROM media m
WHERE m.id = ANY($1::bigint[]) AND m.status = 'stored'
ORDER BY m.id
ON CONFLICT DO NOTHING
