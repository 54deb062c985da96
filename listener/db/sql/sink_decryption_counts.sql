-- sink_decryption_counts: archived messages of encrypted rooms, by decryption status ('' for
-- those archived as ciphertext without BRIDGE_PICKLE_KEY), and the rooms they are in.
SELECT coalesce(decryption, '') AS status, count(*) AS messages, count(DISTINCT room_id) AS rooms
FROM messages
WHERE decryption IS NOT NULL OR message_type = 'm.room.encrypted'
GROUP BY 1
