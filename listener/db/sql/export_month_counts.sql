-- export_month_counts: how many messages chat $1 has per calendar month in time zone $2, from
-- $3 (inclusive) to $4 (exclusive): the export's page plan. One scan of the chat's index range.
SELECT date_trunc('month', "timestamp", $2) AS at, count(*) AS n
FROM messages
WHERE room_id = $1 AND "timestamp" >= $3 AND "timestamp" < $4
GROUP BY 1
