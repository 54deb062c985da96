"""Write Matrix events the way mautrix-whatsapp's homeserver sees them, for the simulator.

Two implementations of one small protocol:

* ``HttpSynapseWriter`` talks to a real Synapse through an application service (ghost users,
  ``?user_id=`` impersonation, ``?ts=`` back-dating), exactly like the bridge does.
* ``SqlSynapseWriter`` writes the rows Synapse would write (events, event_json, relations,
  memberships, media) straight into a Synapse-schema database, for demo and benchmark speed.

Nothing here is used by the archiver itself; it only produces realistic source data.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import io
import json
import random
import string
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

import asyncpg
import httpx

JsonDict = dict[str, Any]
GHOST_PREFIX = "whatsapp_"
ROOM_VERSION = "12"
# event_json.format_version Synapse uses for room version 12 (hashed room IDs).
FORMAT_VERSION = 4
THUMBNAILABLE = frozenset({"image/jpeg", "image/jpg", "image/png", "image/gif", "image/webp"})
# Synapse's default thumbnail_sizes.
THUMBNAIL_SIZES = (
    (32, 32, "crop"),
    (96, 96, "crop"),
    (320, 240, "scale"),
    (640, 480, "scale"),
    (800, 600, "scale"),
)


class SynapseWriteError(Exception):
    """Synapse refused a write."""


@dataclass(frozen=True)
class EventSpec:
    """One event to send; ``ts_ms`` back-dates it (origin_server_ts), as bridges do."""

    room_id: str
    sender_mxid: str
    event_type: str
    content: Mapping[str, Any]
    ts_ms: int | None = None
    state_key: str | None = None


class SynapseWriter(Protocol):
    """What the bridge simulator needs from a homeserver."""

    @property
    def server_name(self) -> str: ...

    @property
    def bot_mxid(self) -> str: ...

    async def ensure_user(self, mxid: str, displayname: str) -> None:
        """Register ``mxid`` (a ghost or a real user) if needed and set its global displayname."""

    async def create_room(self, creator_mxid: str, *, name: str, is_direct: bool = False) -> str:
        """Create a room (creator joined) and return its room ID."""

    async def join(self, room_id: str, mxid: str, *, inviter_mxid: str) -> None:
        """Invite ``mxid`` (by ``inviter_mxid``) and join it."""

    async def send_event(
        self,
        room_id: str,
        sender_mxid: str,
        event_type: str,
        content: Mapping[str, Any],
        ts_ms: int | None = None,
    ) -> str:
        """Send one event and return its event ID."""

    async def send_events_bulk(self, specs: Sequence[EventSpec]) -> list[str]:
        """Send many events, in order, as cheaply as the backend allows."""

    async def upload_media(
        self, data: bytes, mimetype: str, filename: str | None, uploader_mxid: str
    ) -> str:
        """Store media bytes and return the ``mxc://`` URI."""

    async def redact(
        self, room_id: str, event_id: str, sender_mxid: str, reason: str | None = None
    ) -> str:
        """Redact ``event_id``; returns the redaction's event ID."""


def media_content_path(media_id: str) -> Path:
    """Synapse's media_store path of a local upload (the file name drops the first 4 chars)."""
    return Path("local_content", media_id[0:2], media_id[2:4], media_id[4:])


def media_thumbnail_path(
    media_id: str, width: int, height: int, mimetype: str, method: str
) -> Path:
    top, _, sub = mimetype.partition("/")
    name = f"{width}-{height}-{top}-{sub}-{method}"
    return Path("local_thumbnails", media_id[0:2], media_id[2:4], media_id[4:], name)


def is_ghost(mxid: str) -> bool:
    return mxid.startswith("@" + GHOST_PREFIX)


def localpart(mxid: str) -> str:
    return mxid[1:].partition(":")[0]


# --------------------------------------------------------------------------------------------
# HTTP: a real Synapse through the application service API
# --------------------------------------------------------------------------------------------


class HttpSynapseWriter:
    """The bridge's view of Synapse: an AS token for ghosts, access tokens for real users."""

    def __init__(
        self,
        base_url: str,
        *,
        as_token: str,
        server_name: str,
        bot_localpart: str = "whatsappbot",
        client: httpx.AsyncClient | None = None,
        max_retries: int = 8,
    ) -> None:
        self._client = client or httpx.AsyncClient(base_url=base_url, timeout=30.0)
        self._owns_client = client is None
        self._as_token = as_token
        self._server_name = server_name
        self._bot_mxid = f"@{bot_localpart}:{server_name}"
        self._user_tokens: dict[str, str] = {}
        self._max_retries = max_retries

    @property
    def server_name(self) -> str:
        return self._server_name

    @property
    def bot_mxid(self) -> str:
        return self._bot_mxid

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    async def __aenter__(self) -> HttpSynapseWriter:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def ensure_user(self, mxid: str, displayname: str) -> None:
        if mxid == self._bot_mxid:
            pass  # the AS sender exists implicitly
        elif is_ghost(mxid):
            await self._register_ghost(mxid)
        elif mxid not in self._user_tokens:
            await self._register_real_user(mxid)
        path = f"/_matrix/client/v3/profile/{quote(mxid)}/displayname"
        await self._call("PUT", path, mxid, json_body={"displayname": displayname})

    async def create_room(self, creator_mxid: str, *, name: str, is_direct: bool = False) -> str:
        body: JsonDict = {"name": name, "preset": "private_chat", "is_direct": is_direct}
        reply = await self._call("POST", "/_matrix/client/v3/createRoom", creator_mxid, body)
        return str(reply["room_id"])

    async def join(self, room_id: str, mxid: str, *, inviter_mxid: str) -> None:
        room = quote(room_id)
        if mxid != inviter_mxid:
            invite = {"user_id": mxid}
            await self._call(
                "POST", f"/_matrix/client/v3/rooms/{room}/invite", inviter_mxid, invite
            )
        await self._call("POST", f"/_matrix/client/v3/join/{room}", mxid, {})

    async def send_event(
        self,
        room_id: str,
        sender_mxid: str,
        event_type: str,
        content: Mapping[str, Any],
        ts_ms: int | None = None,
    ) -> str:
        path = f"/_matrix/client/v3/rooms/{quote(room_id)}/send/{quote(event_type)}/{_txn_id()}"
        # ?ts= is honoured for AS tokens only; real users' events are live anyway.
        params = {"ts": str(ts_ms)} if ts_ms is not None and self._is_as_user(sender_mxid) else {}
        reply = await self._call("PUT", path, sender_mxid, dict(content), params=params)
        return str(reply["event_id"])

    async def send_events_bulk(self, specs: Sequence[EventSpec]) -> list[str]:
        # The client-server API has no batch send for plain homeservers; keep order by going
        # one at a time (this is also what the bridge's legacy backfill does).
        return [
            await self.send_event(s.room_id, s.sender_mxid, s.event_type, s.content, s.ts_ms)
            for s in specs
        ]

    async def upload_media(
        self, data: bytes, mimetype: str, filename: str | None, uploader_mxid: str
    ) -> str:
        params = {"filename": filename} if filename else {}
        reply = await self._call(
            "POST",
            "/_matrix/media/v3/upload",
            uploader_mxid,
            content=data,
            params=params,
            headers={"Content-Type": mimetype},
        )
        return str(reply["content_uri"])

    async def redact(
        self, room_id: str, event_id: str, sender_mxid: str, reason: str | None = None
    ) -> str:
        path = f"/_matrix/client/v3/rooms/{quote(room_id)}/redact/{quote(event_id)}/{_txn_id()}"
        body = {"reason": reason} if reason else {}
        reply = await self._call("PUT", path, sender_mxid, body)
        return str(reply["event_id"])

    async def _register_ghost(self, mxid: str) -> None:
        body = {"type": "m.login.application_service", "username": localpart(mxid)}
        reply = await self._request(
            "POST", "/_matrix/client/v3/register", self._as_headers(), json_body=body, ok=(400,)
        )
        if reply.get("errcode") not in (None, "M_USER_IN_USE"):
            raise SynapseWriteError(f"ghost registration failed: {reply}")

    async def _register_real_user(self, mxid: str) -> None:
        """Open registration is two-step UIA: a 401 with a session, then m.login.dummy."""
        body: JsonDict = {"username": localpart(mxid), "password": uuid.uuid4().hex}
        first = await self._request(
            "POST", "/_matrix/client/v3/register", {}, json_body=body, ok=(401,)
        )
        body["auth"] = {"type": "m.login.dummy", "session": first["session"]}
        reply = await self._request("POST", "/_matrix/client/v3/register", {}, json_body=body)
        self._user_tokens[str(reply["user_id"])] = str(reply["access_token"])

    def _is_as_user(self, mxid: str) -> bool:
        return mxid not in self._user_tokens

    def _as_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._as_token}"}

    async def _call(
        self,
        method: str,
        path: str,
        as_mxid: str,
        json_body: JsonDict | None = None,
        *,
        content: bytes | None = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> JsonDict:
        """One request acting as ``as_mxid``: its own token, or the AS token + ``user_id``."""
        all_params = dict(params or {})
        if token := self._user_tokens.get(as_mxid):
            auth = {"Authorization": f"Bearer {token}"}
        else:
            auth = self._as_headers()
            if as_mxid != self._bot_mxid:
                all_params["user_id"] = as_mxid
        return await self._request(
            method,
            path,
            {**auth, **(headers or {})},
            json_body=json_body,
            content=content,
            params=all_params,
        )

    async def _request(
        self,
        method: str,
        path: str,
        headers: Mapping[str, str],
        *,
        json_body: JsonDict | None = None,
        content: bytes | None = None,
        params: Mapping[str, str] | None = None,
        ok: tuple[int, ...] = (),
    ) -> JsonDict:
        for attempt in range(self._max_retries + 1):
            resp = await self._client.request(
                method, path, headers=headers, json=json_body, content=content, params=params
            )
            if resp.status_code == 429 and attempt < self._max_retries:
                await asyncio.sleep(_retry_after_s(resp, attempt))
                continue
            if resp.is_error and resp.status_code not in ok:
                raise SynapseWriteError(f"{method} {path}: {resp.status_code} {resp.text[:300]}")
            reply: JsonDict = resp.json()
            return reply
        raise SynapseWriteError(f"{method} {path}: still rate limited")  # pragma: no cover


def _retry_after_s(resp: httpx.Response, attempt: int) -> float:
    """Synapse says how long to wait (retry_after_ms); fall back to doubling from 50 ms."""
    try:
        return float(resp.json()["retry_after_ms"]) / 1000.0
    except (ValueError, KeyError, TypeError):
        return 0.05 * 2.0**attempt


def _txn_id() -> str:
    return "sim" + uuid.uuid4().hex


# --------------------------------------------------------------------------------------------
# SQL: the rows Synapse would write, straight into a Synapse-schema database
# --------------------------------------------------------------------------------------------

SYNC_STREAM_SEQ = """
SELECT setval('events_stream_seq',
              GREATEST((SELECT last_value FROM events_stream_seq),
                       (SELECT COALESCE(max(stream_ordering), 1) FROM events)))
"""

ROOM_HEAD = """
SELECT depth, event_id FROM events WHERE room_id = $1 ORDER BY depth DESC, stream_ordering DESC
LIMIT 1
"""

# One round trip for any number of events: data-modifying CTEs all run, and the MATERIALIZED
# generate_series hands out stream orderings in input order.
INSERT_EVENTS = """
WITH so AS MATERIALIZED (
    SELECT ord, nextval('events_stream_seq') AS stream_ordering
    FROM generate_series(1, cardinality($1::text[])) AS ord
), input AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[],
                         $6::bigint[], $7::bigint[], $8::boolean[], $9::text[], $10::text[],
                         $11::text[])
        WITH ORDINALITY AS t(event_id, room_id, type, sender, depth, origin_server_ts,
                             received_ts, contains_url, state_key, internal_metadata, json, ord)
), ins_json AS (
    INSERT INTO event_json (event_id, room_id, internal_metadata, json, format_version)
    SELECT event_id, room_id, internal_metadata, json, $16 FROM input
), ins_rel AS (
    INSERT INTO event_relations (event_id, relates_to_id, relation_type, aggregation_key)
    SELECT * FROM unnest($12::text[], $13::text[], $14::text[], $15::text[])
)
INSERT INTO events (topological_ordering, event_id, type, room_id, processed, outlier, depth,
                    origin_server_ts, received_ts, sender, contains_url, instance_name,
                    stream_ordering, state_key)
SELECT i.depth, i.event_id, i.type, i.room_id, true, false, i.depth, i.origin_server_ts,
       i.received_ts, i.sender, i.contains_url, 'master', so.stream_ordering, i.state_key
FROM input i JOIN so USING (ord)
ORDER BY ord
RETURNING event_id, stream_ordering
"""

UPSERT_PROFILE = """
INSERT INTO profiles (user_id, displayname, full_user_id) VALUES ($1, $2, $3)
ON CONFLICT (user_id) DO UPDATE SET displayname = EXCLUDED.displayname
"""
GET_DISPLAYNAME = "SELECT displayname FROM profiles WHERE full_user_id = $1"
INSERT_ROOM = """
INSERT INTO rooms (room_id, is_public, creator, room_version, has_auth_chain_index)
VALUES ($1, false, $2, $3, true)
"""
UPSERT_ROOM_STATS = """
INSERT INTO room_stats_state (room_id, name, join_rules, history_visibility, is_federatable)
VALUES ($1, $2, 'invite', 'shared', true)
ON CONFLICT (room_id) DO UPDATE SET name = COALESCE(EXCLUDED.name, room_stats_state.name)
"""
INSERT_MEMBERSHIP = """
INSERT INTO room_memberships (event_id, user_id, sender, room_id, membership, forgotten,
                              display_name, avatar_url, event_stream_ordering, participant)
VALUES ($1, $2, $3, $4, $5, 0, $6, NULL, $7, false)
"""
UPSERT_CURRENT_STATE = """
INSERT INTO current_state_events (event_id, room_id, type, state_key, membership,
                                  event_stream_ordering)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (room_id, type, state_key) DO UPDATE
SET event_id = EXCLUDED.event_id, membership = EXCLUDED.membership,
    event_stream_ordering = EXCLUDED.event_stream_ordering
"""
INSERT_REDACTION = """
INSERT INTO redactions (event_id, redacts, have_censored, received_ts, recheck)
VALUES ($1, $2, false, $3, false)
"""
# Synapse forgets the relation of a redacted relating event at once (_handle_redact_relations).
DELETE_RELATION = "DELETE FROM event_relations WHERE event_id = $1"
INSERT_MEDIA = """
INSERT INTO local_media_repository (media_id, media_type, media_length, created_ts, upload_name,
                                    user_id, safe_from_quarantine, authenticated, sha256)
VALUES ($1, $2, $3, $4, $5, $6, false, false, $7)
"""
INSERT_THUMBNAIL = """
INSERT INTO local_media_repository_thumbnails (media_id, thumbnail_width, thumbnail_height,
                                               thumbnail_type, thumbnail_method, thumbnail_length)
VALUES ($1, $2, $3, $4, $5, $6)
"""


@dataclass
class _Prepared:
    """An event with everything Synapse would compute for it."""

    spec: EventSpec
    event_id: str
    depth: int
    origin_server_ts: int
    json_text: str
    relation: tuple[str, str, str | None] | None = None
    stream_ordering: int = 0


@dataclass
class _RoomHead:
    depth: int
    last_event_id: str | None = None
    members: set[str] = field(default_factory=set)


class SqlSynapseWriter:
    """Writes Synapse's rows directly. Not safe next to a running Synapse (its caches)."""

    def __init__(
        self,
        db: Any,
        *,
        server_name: str,
        media_store_path: Path,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.time,
        bot_localpart: str = "whatsappbot",
        thumbnails: bool = True,
    ) -> None:
        """``db`` is an asyncpg pool or connection on a database with Synapse's schema."""
        self._db = db
        self._server_name = server_name
        self._bot_mxid = f"@{bot_localpart}:{server_name}"
        self.media_store_path = media_store_path
        self._rng = rng or random.Random()
        self._clock = clock
        self._thumbnails = thumbnails
        self._rooms: dict[str, _RoomHead] = {}
        # One writer persists at a time, so depths and prev_events stay a chain per room.
        self._lock = asyncio.Lock()
        self._seq_synced = False

    @property
    def server_name(self) -> str:
        return self._server_name

    @property
    def bot_mxid(self) -> str:
        return self._bot_mxid

    async def ensure_user(self, mxid: str, displayname: str) -> None:
        await self._db.execute(UPSERT_PROFILE, localpart(mxid), displayname, mxid)

    async def create_room(self, creator_mxid: str, *, name: str, is_direct: bool = False) -> str:
        ts = self._now_ms()
        create_content = {"room_version": ROOM_VERSION}
        create_spec = EventSpec("", creator_mxid, "m.room.create", create_content, ts, "")
        # Room v12: the room ID is the create event's ID with '!' for '$'; the create event's
        # JSON carries no room_id.
        create_json = self._pdu_json(create_spec, depth=1, prev=None, ts=ts, with_room=False)
        event_id = _event_id(create_json, self._rng)
        room_id = "!" + event_id[1:]
        create = _Prepared(replace_room(create_spec, room_id), event_id, 1, ts, create_json)
        await self._persist([create])
        await self.join(room_id, creator_mxid, inviter_mxid=creator_mxid)
        name_spec = EventSpec(room_id, creator_mxid, "m.room.name", {"name": name}, ts, "")
        await self._persist([name_spec])
        return room_id

    async def join(self, room_id: str, mxid: str, *, inviter_mxid: str) -> None:
        displayname = await self._db.fetchval(GET_DISPLAYNAME, mxid)
        content: JsonDict = {"membership": "join", "displayname": displayname or localpart(mxid)}
        spec = EventSpec(room_id, mxid, "m.room.member", content, state_key=mxid)
        await self._persist([spec])

    async def send_event(
        self,
        room_id: str,
        sender_mxid: str,
        event_type: str,
        content: Mapping[str, Any],
        ts_ms: int | None = None,
    ) -> str:
        ids = await self._persist([EventSpec(room_id, sender_mxid, event_type, content, ts_ms)])
        return ids[0]

    async def send_events_bulk(self, specs: Sequence[EventSpec]) -> list[str]:
        return await self._persist(list(specs))

    async def redact(
        self, room_id: str, event_id: str, sender_mxid: str, reason: str | None = None
    ) -> str:
        content: JsonDict = {"redacts": event_id, **({"reason": reason} if reason else {})}
        spec = EventSpec(room_id, sender_mxid, "m.room.redaction", content)
        ids = await self._persist([spec])
        return ids[0]

    async def upload_media(
        self, data: bytes, mimetype: str, filename: str | None, uploader_mxid: str
    ) -> str:
        media_id = "".join(self._rng.choices(string.ascii_letters, k=24))
        _write_file(self.media_store_path / media_content_path(media_id), data)
        sha256 = hashlib.sha256(data).hexdigest()
        row = (media_id, mimetype, len(data), self._now_ms(), filename, uploader_mxid, sha256)
        thumbs = _make_thumbnails(data, mimetype) if self._thumbnails else []
        async with self._connection() as conn, conn.transaction():
            await conn.execute(INSERT_MEDIA, *row)
            for width, height, method, thumb_type, thumb in thumbs:
                path = media_thumbnail_path(media_id, width, height, thumb_type, method)
                _write_file(self.media_store_path / path, thumb)
                await conn.execute(
                    INSERT_THUMBNAIL, media_id, width, height, thumb_type, method, len(thumb)
                )
        return f"mxc://{self._server_name}/{media_id}"

    async def _persist(self, items: Sequence[EventSpec | _Prepared]) -> list[str]:
        async with self._lock, self._connection() as conn, conn.transaction():
            if not self._seq_synced:
                await conn.execute(SYNC_STREAM_SEQ)
                self._seq_synced = True
            prepared = [await self._prepare(conn, item) for item in items]
            rows = await conn.fetch(INSERT_EVENTS, *_columns(prepared), FORMAT_VERSION)
            orderings = {r["event_id"]: r["stream_ordering"] for r in rows}
            for item in prepared:
                item.stream_ordering = orderings[item.event_id]
                await self._side_effects(conn, item)
        return [item.event_id for item in prepared]

    async def _prepare(self, conn: Any, spec: EventSpec | _Prepared) -> _Prepared:
        if isinstance(spec, _Prepared):  # already built (a room's create event)
            self._advance(spec)
            return spec
        head = await self._head(conn, spec.room_id)
        ts = spec.ts_ms if spec.ts_ms is not None else self._now_ms()
        json_text = self._pdu_json(spec, head.depth + 1, head.last_event_id, ts, with_room=True)
        event_id = _event_id(json_text, self._rng)
        item = _Prepared(spec, event_id, head.depth + 1, ts, json_text, _relation(spec.content))
        self._advance(item)
        return item

    def _advance(self, item: _Prepared) -> None:
        head = self._rooms.setdefault(item.spec.room_id, _RoomHead(depth=0))
        head.depth = item.depth
        head.last_event_id = item.event_id

    async def _head(self, conn: Any, room_id: str) -> _RoomHead:
        if room_id not in self._rooms:
            row = await conn.fetchrow(ROOM_HEAD, room_id)
            head = _RoomHead(depth=row[0], last_event_id=row[1]) if row else _RoomHead(depth=0)
            self._rooms[room_id] = head
        return self._rooms[room_id]

    async def _side_effects(self, conn: Any, item: _Prepared) -> None:
        """The per-type tables Synapse fills next to events/event_json."""
        spec, so = item.spec, item.stream_ordering
        if spec.event_type == "m.room.create":
            await conn.execute(INSERT_ROOM, spec.room_id, spec.sender_mxid, ROOM_VERSION)
            await conn.execute(UPSERT_ROOM_STATS, spec.room_id, None)
        elif spec.event_type == "m.room.name":
            await conn.execute(UPSERT_ROOM_STATS, spec.room_id, spec.content.get("name"))
        elif spec.event_type == "m.room.member" and spec.state_key is not None:
            membership = (spec.content["membership"], spec.content.get("displayname"))
            await conn.execute(
                INSERT_MEMBERSHIP,
                item.event_id,
                spec.state_key,
                spec.sender_mxid,
                spec.room_id,
                *membership,
                so,
            )
        elif spec.event_type == "m.room.redaction":
            target = str(spec.content["redacts"])
            await conn.execute(INSERT_REDACTION, item.event_id, target, self._now_ms())
            await conn.execute(DELETE_RELATION, target)
        if spec.state_key is not None:
            is_member = spec.event_type == "m.room.member"
            state = (spec.event_type, spec.state_key)
            member = spec.content.get("membership") if is_member else None
            await conn.execute(
                UPSERT_CURRENT_STATE, item.event_id, spec.room_id, *state, member, so
            )

    def _pdu_json(
        self, spec: EventSpec, depth: int, prev: str | None, ts: int, *, with_room: bool
    ) -> str:
        """A canonical-ish PDU as Synapse stores it: sorted keys, ASCII-escaped, no event_id."""
        pdu: JsonDict = {
            "auth_events": [],
            "prev_events": [prev] if prev else [],
            "type": spec.event_type,
            "sender": spec.sender_mxid,
            "content": dict(spec.content),
            "depth": depth,
            "origin_server_ts": ts,
            "hashes": {"sha256": _b64(hashlib.sha256(_canonical(spec.content)).digest())},
            "signatures": {self._server_name: {"ed25519:a_sim": _b64(self._rng.randbytes(64))}},
            "unsigned": {"age_ts": ts},
        }
        if with_room:
            pdu["room_id"] = spec.room_id
        if spec.state_key is not None:
            pdu["state_key"] = spec.state_key
        return _canonical(pdu).decode()

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def _connection(self) -> Any:
        """A pool hands out a connection; a bare connection is used as is."""
        if isinstance(self._db, asyncpg.Pool):
            return self._db.acquire()
        return _Borrowed(self._db)


class _Borrowed:
    def __init__(self, conn: Any) -> None:
        self._conn = conn

    async def __aenter__(self) -> Any:
        return self._conn

    async def __aexit__(self, *exc: object) -> None:
        return None


def replace_room(spec: EventSpec, room_id: str) -> EventSpec:
    return dataclasses.replace(spec, room_id=room_id)


def _columns(items: Sequence[_Prepared]) -> list[list[Any]]:
    """Column arrays for INSERT_EVENTS ($1..$15)."""
    now_ms = int(time.time() * 1000)
    relations = [(i.event_id, *i.relation) for i in items if i.relation]
    return [
        [i.event_id for i in items],
        [i.spec.room_id for i in items],
        [i.spec.event_type for i in items],
        [i.spec.sender_mxid for i in items],
        [i.depth for i in items],
        [i.origin_server_ts for i in items],
        [now_ms for _ in items],
        [isinstance(i.spec.content.get("url"), str) for i in items],
        [i.spec.state_key for i in items],
        [json.dumps({"txn_id": _txn_id()}) for _ in items],
        [i.json_text for i in items],
        [r[0] for r in relations],
        [r[1] for r in relations],
        [r[2] for r in relations],
        [r[3] for r in relations],
    ]


def _relation(content: Mapping[str, Any]) -> tuple[str, str, str | None] | None:
    """(relates_to_id, rel_type, key) when content has a rel_type + event_id, like Synapse."""
    rel = content.get("m.relates_to")
    if not isinstance(rel, Mapping):
        return None
    rel_type, target, key = rel.get("rel_type"), rel.get("event_id"), rel.get("key")
    if not isinstance(rel_type, str) or not isinstance(target, str):
        return None  # e.g. a plain reply: only m.in_reply_to, no relation row
    return target, rel_type, key if isinstance(key, str) else None


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode().rstrip("=")


def _event_id(json_text: str, rng: random.Random) -> str:
    """``$`` + 43 url-safe base64 chars, like a room v4+ reference hash (salted: unique)."""
    digest = hashlib.sha256(json_text.encode() + rng.randbytes(16)).digest()
    return "$" + base64.urlsafe_b64encode(digest).decode().rstrip("=")


def _write_file(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _make_thumbnails(data: bytes, mimetype: str) -> list[tuple[int, int, str, str, bytes]]:
    """Synapse's default thumbnail set, when Pillow is around (it is optional for the demo)."""
    if mimetype not in THUMBNAILABLE:
        return []
    try:
        from PIL import Image, ImageOps
    except ImportError:
        return []
    out_type = "image/png" if mimetype == "image/png" else "image/jpeg"
    made: dict[tuple[int, int, str], bytes] = {}
    with Image.open(io.BytesIO(data)) as img:
        source = img.convert("RGBA" if out_type == "image/png" else "RGB")
    for width, height, method in THUMBNAIL_SIZES:
        if method == "crop":
            thumb = ImageOps.fit(source, (width, height))
        else:
            ratio = min(width / source.width, height / source.height, 1.0)
            size = (max(1, round(source.width * ratio)), max(1, round(source.height * ratio)))
            thumb = source.resize(size)
        buf = io.BytesIO()
        thumb.save(buf, format="PNG" if out_type == "image/png" else "JPEG")
        made.setdefault((thumb.width, thumb.height, method), buf.getvalue())
    return [(w, h, method, out_type, raw) for (w, h, method), raw in made.items()]
