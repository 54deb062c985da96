-- bridge_rows: one batch of bridge message rows by rowid, with portal and ghost LEFT-joined
-- (a read racing a cascade delete or a portal re-ID must not drop the message) and the Matrix
-- event IDs of the reply target and thread root resolved through the bridge's unique key.
SELECT m.rowid,
       m.bridge_id,
       m.id,
       m.part_id,
       m.mxid,
       m.room_id,
       m.room_receiver,
       m.sender_id,
       m.sender_mxid,
       m.timestamp,
       m.thread_root_id,
       m.reply_to_id,
       m.metadata::text AS metadata,
       p.mxid AS portal_mxid,
       p.name AS portal_name,
       p.room_type,
       g.name AS ghost_name,
       reply.mxid AS reply_to_mxid,
       thread.mxid AS thread_root_mxid
FROM message m
LEFT JOIN portal p
       ON p.bridge_id = m.bridge_id AND p.id = m.room_id AND p.receiver = m.room_receiver
LEFT JOIN ghost g
       ON g.bridge_id = m.bridge_id AND g.id = m.sender_id
LEFT JOIN LATERAL (
    SELECT r.mxid FROM message r
    WHERE m.reply_to_id IS NOT NULL
      AND r.bridge_id = m.bridge_id AND r.room_receiver = m.room_receiver
      AND r.id = m.reply_to_id
      AND (m.reply_to_part_id IS NULL OR r.part_id = m.reply_to_part_id)
    ORDER BY r.part_id LIMIT 1
) reply ON true
LEFT JOIN LATERAL (
    SELECT t.mxid FROM message t
    WHERE m.thread_root_id IS NOT NULL
      AND t.bridge_id = m.bridge_id AND t.room_receiver = m.room_receiver
      AND t.id = m.thread_root_id
    ORDER BY t.part_id LIMIT 1
) thread ON true
WHERE m.rowid = ANY($1::bigint[])
  AND m.bridge_id = $2
ORDER BY m.rowid
