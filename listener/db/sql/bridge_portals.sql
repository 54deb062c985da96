-- bridge_portals: every portal that has a Matrix room, for auto-registration.
SELECT id, receiver, mxid, name, room_type
FROM portal
WHERE bridge_id = $1 AND mxid IS NOT NULL
