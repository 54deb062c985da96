-- bridge_portals_by_mxid: what the bridge still knows of these Matrix rooms.
SELECT mxid, id, name, room_type
FROM portal
WHERE bridge_id = $1 AND mxid = ANY($2::text[])
