-- bridge_megolm_sessions: the stored Megolm sessions among $2 (session IDs) of account $1, with
-- their room (the caller keeps only the (room, session) pairs it asked for, as mautrix-go's
-- GetGroupSession matches room_id, session_id and account_id: crypto/sql_store.go).
-- `session` is the libolm pickle; NULL with withheld_code set for a withheld or redacted session.
-- Read-only: the bridge re-stores a session after each use; the archiver never writes it.
SELECT room_id, session_id::text AS session_id, session, withheld_code
FROM crypto_megolm_inbound_session
WHERE account_id = $1
  AND session_id = ANY($2::char(43)[])
