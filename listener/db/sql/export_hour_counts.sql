-- export_hour_counts: messages of chat $1 per hour, from $3 to $4 (a day over the page limit;
-- $2, the time zone, is unused by hours but keeps the three count queries alike).
SELECT date_trunc('hour', "timestamp", $2) AS at, count(*) AS n
FROM messages
WHERE room_id = $1 AND "timestamp" >= $3 AND "timestamp" < $4
GROUP BY 1
