-- bridge_database_owner: which program owns the bridge database (go.mau.fi/util dbutil writes
-- one row, key 0: 'megabridge/mautrix-whatsapp' for a bridgev2 bridge, 'mautrix-whatsapp' for a
-- legacy one). Read only when the catalog says we may.
SELECT owner FROM database_owner WHERE key = 0
