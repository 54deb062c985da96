-- archiver-db archive schema, migration 0003: media archiving (additive, idempotent).
-- Applied to the PostgreSQL sink and to Supabase's database alike.

ALTER TABLE media
    ADD COLUMN IF NOT EXISTS room_id        TEXT,
    -- Synapse's local_media_repository/remote_media_cache created_ts (when the bytes arrived).
    ADD COLUMN IF NOT EXISTS uploaded_at    TIMESTAMPTZ,
    -- SHA-256 (hex) of the bytes as Synapse keeps them: the ciphertext for an encrypted
    -- attachment (`sha256` is always the stored plaintext, the content address).
    ADD COLUMN IF NOT EXISTS source_sha256  TEXT;

-- Retry scans: rows that are not stored, oldest attempt first.
CREATE INDEX IF NOT EXISTS media_retry_idx ON media (status, updated_at)
    WHERE status IN ('pending', 'missing', 'failed');
CREATE INDEX IF NOT EXISTS media_event_idx ON media (event_id);

-- One analysis job per distinct content: the same photo forwarded to ten chats is stored once
-- and analysed once (the job points at the first media row that stored it).
ALTER TABLE analysis_jobs ADD COLUMN IF NOT EXISTS sha256 TEXT;
CREATE UNIQUE INDEX IF NOT EXISTS analysis_jobs_sha256_type_key
    ON analysis_jobs (sha256, job_type) WHERE sha256 IS NOT NULL;
