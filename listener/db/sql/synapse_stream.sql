-- synapse_stream: the reconciliation pass's scan of Synapse's event stream, in persist order,
-- limited to message-like events, reactions and redactions in the given rooms.
SELECT e.event_id,
       e.room_id,
       e.type,
       e.stream_ordering,
       e.received_ts,
       j.json
FROM events e
JOIN event_json j ON j.event_id = e.event_id
WHERE e.stream_ordering > $1
  AND e.room_id = ANY($2::text[])
  AND e.type = ANY($3::text[])
  AND e.state_key IS NULL
  AND NOT e.outlier
  AND e.rejection_reason IS NULL
ORDER BY e.stream_ordering
LIMIT $4
