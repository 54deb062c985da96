-- archiver-db archive schema, migration 0004: the media catch-up scans messages by updated_at.
CREATE INDEX IF NOT EXISTS messages_updated_at_idx ON messages (updated_at);
