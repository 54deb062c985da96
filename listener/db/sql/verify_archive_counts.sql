-- verify_archive_counts: archived messages per room in a time range (half-open).
SELECT room_id, count(*) AS n
FROM messages
WHERE ($1::timestamptz IS NULL OR "timestamp" >= $1::timestamptz)
  AND ($2::timestamptz IS NULL OR "timestamp" < $2::timestamptz)
GROUP BY room_id
