-- doctor_megolm_sample: a few of the bridge's newest Megolm session pickles of account $1, to
-- check that BRIDGE_PICKLE_KEY opens them (the pickles never leave the doctor process).
SELECT session
FROM crypto_megolm_inbound_session
WHERE account_id = $1
  AND session IS NOT NULL
ORDER BY received_at DESC NULLS LAST
LIMIT $2
