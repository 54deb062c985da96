-- export_day_counts: messages of chat $1 per day in time zone $2, from $3 to $4 (a month over
-- the page limit).
SELECT date_trunc('day', "timestamp", $2) AS at, count(*) AS n
FROM messages
WHERE room_id = $1 AND "timestamp" >= $3 AND "timestamp" < $4
GROUP BY 1
