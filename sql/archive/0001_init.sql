-- archiver-db archive schema, migration 0001.
-- The contract shared by the PostgreSQL sink and the Supabase sink (the same file is applied to
-- Supabase's database). Backward compatible with the old bot archiver: its columns keep their
-- names and meaning; everything else is additive. Idempotent: safe to run twice.

CREATE TABLE IF NOT EXISTS messages (
    event_id             TEXT PRIMARY KEY,
    room_id              TEXT,
    room_name            TEXT,
    sender               TEXT,
    sender_display_name  TEXT,
    "timestamp"          TIMESTAMPTZ,
    message_type         TEXT,
    content              JSONB,
    archived_at          TIMESTAMPTZ NOT NULL DEFAULT now()
);

ALTER TABLE messages
    ADD COLUMN IF NOT EXISTS whatsapp_message_id   TEXT,
    ADD COLUMN IF NOT EXISTS whatsapp_chat_id      TEXT,
    ADD COLUMN IF NOT EXISTS whatsapp_sender_id    TEXT,
    ADD COLUMN IF NOT EXISTS part_id               TEXT,
    ADD COLUMN IF NOT EXISTS bridge_id             TEXT,
    ADD COLUMN IF NOT EXISTS bridge_rowid          BIGINT,
    ADD COLUMN IF NOT EXISTS room_type             TEXT,
    ADD COLUMN IF NOT EXISTS body                  TEXT,
    ADD COLUMN IF NOT EXISTS reply_to_event_id     TEXT,
    ADD COLUMN IF NOT EXISTS thread_root_event_id  TEXT,
    ADD COLUMN IF NOT EXISTS has_matrix_event      BOOLEAN NOT NULL DEFAULT true,
    -- The exact event JSON when PostgreSQL could not hold it as jsonb/text (a NUL character):
    -- `content` then carries a sanitised copy and this column the lossless original, escaped.
    ADD COLUMN IF NOT EXISTS content_raw           TEXT,
    ADD COLUMN IF NOT EXISTS updated_at            TIMESTAMPTZ NOT NULL DEFAULT now();

CREATE INDEX IF NOT EXISTS messages_room_time_idx ON messages (room_id, "timestamp");
CREATE INDEX IF NOT EXISTS messages_bridge_rowid_idx ON messages (bridge_rowid);
CREATE INDEX IF NOT EXISTS messages_whatsapp_chat_idx ON messages (whatsapp_chat_id);

CREATE TABLE IF NOT EXISTS media (
    id                 BIGSERIAL PRIMARY KEY,
    event_id           TEXT NOT NULL,
    mxc_url            TEXT NOT NULL,
    kind               TEXT NOT NULL,
    original_filename  TEXT,
    mimetype           TEXT,
    size_bytes         BIGINT,
    sha256             TEXT,
    storage_path       TEXT,
    width              INTEGER,
    height             INTEGER,
    duration_ms        BIGINT,
    encrypted          BOOLEAN NOT NULL DEFAULT false,
    status             TEXT NOT NULL DEFAULT 'pending',
    status_reason      TEXT,
    attempts           INTEGER NOT NULL DEFAULT 0,
    created_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT media_event_mxc_key UNIQUE (event_id, mxc_url),
    CONSTRAINT media_status_check
        CHECK (status IN ('pending', 'stored', 'missing', 'quarantined', 'rejected', 'failed', 'skipped'))
);
CREATE INDEX IF NOT EXISTS media_sha256_idx ON media (sha256);
CREATE INDEX IF NOT EXISTS media_status_idx ON media (status) WHERE status <> 'stored';

CREATE TABLE IF NOT EXISTS analysis_jobs (
    id          BIGSERIAL PRIMARY KEY,
    media_id    BIGINT NOT NULL REFERENCES media (id) ON DELETE CASCADE,
    event_id    TEXT NOT NULL,
    job_type    TEXT NOT NULL DEFAULT 'analyze',
    status      TEXT NOT NULL DEFAULT 'pending',
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT analysis_jobs_media_type_key UNIQUE (media_id, job_type)
);

CREATE TABLE IF NOT EXISTS monitored_rooms (
    room_id        TEXT PRIMARY KEY,
    enabled        BOOLEAN NOT NULL DEFAULT true,
    archive_media  BOOLEAN NOT NULL DEFAULT true,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);
ALTER TABLE monitored_rooms
    ADD COLUMN IF NOT EXISTS whatsapp_id  TEXT,
    ADD COLUMN IF NOT EXISTS bridge_type  TEXT DEFAULT 'whatsapp',
    ADD COLUMN IF NOT EXISTS room_name    TEXT;
CREATE INDEX IF NOT EXISTS idx_monitored_rooms_whatsapp
    ON monitored_rooms (whatsapp_id) WHERE whatsapp_id IS NOT NULL;

-- Named cursors and facts the archiver keeps about its own progress. A value is written only
-- after the work it covers is durable, so a crash replays (idempotently) instead of losing.
CREATE TABLE IF NOT EXISTS archiver_state (
    name        TEXT PRIMARY KEY,
    value       JSONB NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Work that could not be archived, kept visible and retryable (`archiver-db retry-failures`).
CREATE TABLE IF NOT EXISTS archive_failures (
    id            BIGSERIAL PRIMARY KEY,
    kind          TEXT NOT NULL,
    subject       TEXT NOT NULL,
    bridge_rowid  BIGINT,
    event_id      TEXT,
    room_id       TEXT,
    reason        TEXT NOT NULL,
    detail        JSONB,
    attempts      INTEGER NOT NULL DEFAULT 1,
    first_seen    TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_seen     TIMESTAMPTZ NOT NULL DEFAULT now(),
    resolved_at   TIMESTAMPTZ,
    CONSTRAINT archive_failures_kind_subject_key UNIQUE (kind, subject)
);
CREATE INDEX IF NOT EXISTS archive_failures_open_idx ON archive_failures (kind) WHERE resolved_at IS NULL;
