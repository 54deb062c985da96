-- viewer_reactions: the reactions still standing on these messages, counted per emoji.
SELECT message_event_id, emoji, count(*) AS count,
       (array_agg(sender ORDER BY "timestamp"))[1:20] AS senders
FROM reactions
WHERE message_event_id = ANY($1::text[]) AND removed_at IS NULL AND emoji IS NOT NULL
GROUP BY message_event_id, emoji
ORDER BY message_event_id, count(*) DESC, min("timestamp")
