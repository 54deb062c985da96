-- synapse_events: a whole batch of events by ID, with the flags that say whether they count.
SELECT e.event_id,
       e.room_id,
       e.type,
       e.sender,
       e.origin_server_ts,
       e.received_ts,
       e.stream_ordering,
       e.outlier,
       e.rejection_reason,
       j.json,
       j.internal_metadata
FROM events e
JOIN event_json j ON j.event_id = e.event_id
WHERE e.event_id = ANY($1::text[])
