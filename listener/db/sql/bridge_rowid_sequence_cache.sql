-- bridge_rowid_sequence_cache: the cache size of message.rowid's identity sequence. With a cache
-- of 1 rowids are handed out in order, which is what lets a snapshot settle a gap; a larger cache
-- lets a session hold unused rowids for later, and gaps are then only given up on by timeout.
SELECT s.seqcache AS cache
FROM pg_sequence s
WHERE s.seqrelid = pg_get_serial_sequence('message', 'rowid')::regclass
