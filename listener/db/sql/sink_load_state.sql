-- sink_load_state: one named state value.
SELECT value::text FROM archiver_state WHERE name = $1
