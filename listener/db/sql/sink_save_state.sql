-- sink_save_state: one named state value, replaced.
INSERT INTO archiver_state (name, value, updated_at) VALUES ($1, $2::jsonb, now())
ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value, updated_at = now()
