-- synapse_events: a whole batch of events by ID in one round trip, each with the flags that say
-- whether it counts, its m.replace edits (as JSON) and the first redaction that targets it.
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
       j.internal_metadata,
       edits.list AS edits,
       redaction.event_id AS redaction_event_id,
       redaction.ts AS redaction_ts
FROM events e
JOIN event_json j ON j.event_id = e.event_id
LEFT JOIN LATERAL (
    SELECT json_agg(json_build_object(
               'event_id', ee.event_id, 'room_id', ee.room_id, 'type', ee.type,
               'sender', ee.sender, 'origin_server_ts', ee.origin_server_ts,
               'received_ts', ee.received_ts, 'stream_ordering', ee.stream_ordering,
               'json', ej.json)) AS list
    FROM event_relations r
    JOIN events ee ON ee.event_id = r.event_id
    JOIN event_json ej ON ej.event_id = r.event_id
    WHERE r.relates_to_id = e.event_id
      AND r.relation_type = 'm.replace'
      AND NOT ee.outlier
      AND ee.rejection_reason IS NULL
) edits ON true
LEFT JOIN LATERAL (
    SELECT rd.event_id, coalesce(re.origin_server_ts, rd.received_ts) AS ts
    FROM redactions rd
    LEFT JOIN events re ON re.event_id = rd.event_id
    WHERE rd.redacts = e.event_id
      AND (re.event_id IS NULL OR re.rejection_reason IS NULL)
    ORDER BY ts, rd.event_id
    LIMIT 1
) redaction ON true
WHERE e.event_id = ANY($1::text[])
