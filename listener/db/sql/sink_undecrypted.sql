-- sink_undecrypted: messages still waiting for a Megolm session (decryption = 'no_session'),
-- in event ID order after $1 (a keyset page: the late-key pass walks them all, a page per
-- pass, so rows whose session never comes do not starve the others). messages_undecrypted_idx.
SELECT event_id, room_id, megolm_session_id
FROM messages
WHERE decryption = 'no_session'
  AND megolm_session_id IS NOT NULL
  AND event_id > $1
ORDER BY event_id
LIMIT $2
