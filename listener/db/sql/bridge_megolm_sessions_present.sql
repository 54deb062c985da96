-- bridge_megolm_sessions_present: which of the sessions $2 (IDs) account $1 holds now, without
-- reading the pickles (the late-key pass only needs to know which messages to decrypt again).
SELECT room_id, session_id::text AS session_id
FROM crypto_megolm_inbound_session
WHERE account_id = $1
  AND session_id = ANY($2::char(43)[])
  AND (session IS NOT NULL OR withheld_code IS NOT NULL)
