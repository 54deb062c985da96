-- verify_bridge_rows: every bridge message part in a time range (ns, half-open), with its room.
SELECT m.rowid, m.mxid, m.room_id AS chat_id, p.mxid AS portal_mxid, p.name AS portal_name
FROM message m
LEFT JOIN portal p
       ON p.bridge_id = m.bridge_id AND p.id = m.room_id AND p.receiver = m.room_receiver
WHERE m.bridge_id = $1
  AND ($2::bigint IS NULL OR m.timestamp >= $2::bigint)
  AND ($3::bigint IS NULL OR m.timestamp < $3::bigint)
ORDER BY m.rowid
