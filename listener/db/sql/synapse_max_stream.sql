-- synapse_max_stream: the newest stream position Synapse has persisted (the unique index on
-- events.stream_ordering answers it from one end). The reconciliation pass never trusts a saved
-- position beyond it: a Synapse database restored from a backup would otherwise hide every event
-- until the stream caught up again.
SELECT coalesce(max(stream_ordering), 0) AS max_stream FROM events
