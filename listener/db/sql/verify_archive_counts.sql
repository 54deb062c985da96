-- verify_archive_counts: archived messages per room in a time range (half-open), and how many
-- of them are still ciphertext (an encrypted room's messages not, or not yet, decrypted).
SELECT room_id, count(*) AS n,
       count(*) FILTER (WHERE message_type = 'm.room.encrypted') AS encrypted
FROM messages
WHERE ($1::timestamptz IS NULL OR "timestamp" >= $1::timestamptz)
  AND ($2::timestamptz IS NULL OR "timestamp" < $2::timestamptz)
GROUP BY room_id
