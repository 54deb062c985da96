-- export_reactions: every reaction ever given to these messages, removed ones included.
SELECT message_event_id, emoji, sender, "timestamp", removed_at
FROM reactions
WHERE message_event_id = ANY($1::text[])
ORDER BY message_event_id, "timestamp", reaction_event_id
