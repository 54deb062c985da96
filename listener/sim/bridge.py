"""A mautrix-whatsapp stand-in that writes what the real bridge writes, in the order it does.

For every WhatsApp message the real bridge first sends the Matrix event (through the homeserver),
THEN inserts the ``message`` row in its own autocommit statement (source-schemas.md §2.1). The
simulator does the same through a ``SynapseWriter`` (real Synapse over HTTP, or direct SQL) and an
asyncpg pool/connection on a bridge database (schema: ``listener/sim/fixtures/bridge_v29.sql``).

IDs follow mautrix-whatsapp's formats (§2.6): group JIDs ``120363…@g.us``, DM portals keyed by the
contact's JID with the login ID as receiver, ghosts by phone digits or ``lid-<n>``, message IDs
``<chatJID>:<senderJID>:<WA id>``, timestamps in nanoseconds with one-second resolution.
Used by the demo, the tests and the benchmarks; the archiver never imports it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import json
import random
import struct
import time
import zlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import asyncpg

from listener.sim import megolm, synapse_writer

FIXTURES = Path(__file__).resolve().parent / "fixtures"
BRIDGE_ID = ""  # standard mautrix-whatsapp passes an empty bridge ID
NS_PER_S = 1_000_000_000
JsonDict = dict[str, Any]
MediaKind = Literal["image", "video", "audio", "voice", "file", "sticker"]
OnSent = Callable[["SentMessage"], Awaitable[None] | None]

WORDS = (
    "ok",
    "see",
    "you",
    "tomorrow",
    "at",
    "the",
    "station",
    "lunch",
    "sounds",
    "good",
    "call",
    "me",
    "later",
    "thanks",
    "photos",
    "from",
    "the",
    "trip",
    "running",
    "late",
    "sorry",
    "🙂",
    "Grüße",
    "café",
    "meeting",
    "moved",
    "to",
    "three",
    "did",
    "you",
    "get",
    "my",
    "message",
)
FIRST_NAMES = ("Lena", "Jonas", "Mia", "Paul", "Sofia", "Ali", "Chen", "Ana", "Tom", "Zoë")
GROUP_NAMES = ("Family", "Climbing crew", "Flat 3B", "Project Falcon", "Book club")

INSERT_USER = """
INSERT INTO "user" (bridge_id, mxid, management_room, access_token) VALUES ($1, $2, NULL, NULL)
ON CONFLICT DO NOTHING
"""
INSERT_LOGIN = """
INSERT INTO user_login (bridge_id, user_mxid, id, remote_name, remote_profile, space_room,
                        metadata)
VALUES ($1, $2, $3, $4, $5::jsonb, NULL, $6::jsonb)
ON CONFLICT DO NOTHING
"""
INSERT_GHOST = """
INSERT INTO ghost (bridge_id, id, name, avatar_id, avatar_hash, avatar_mxc, name_set, avatar_set,
                   contact_info_set, is_bot, identifiers, extra_profile, metadata)
VALUES ($1, $2, $3, '', '', '', $4, false, $4, false, $5::jsonb, NULL, $6::jsonb)
ON CONFLICT (bridge_id, id) DO NOTHING
"""
INSERT_PORTAL = """
INSERT INTO portal (bridge_id, id, receiver, mxid, parent_id, parent_receiver, relay_bridge_id,
                    relay_login_id, other_user_id, name, topic, avatar_id, avatar_hash,
                    avatar_mxc, name_set, avatar_set, topic_set, name_is_custom, in_space,
                    message_request, room_type, disappear_type, disappear_timer, cap_state,
                    metadata)
VALUES ($1, $2, $3, $4, NULL, '', NULL, NULL, $5, $6, '', '', '', '', true, false, false, false,
        false, false, $7, NULL, NULL, NULL, '{}'::jsonb)
"""
INSERT_USER_PORTAL = """
INSERT INTO user_portal (bridge_id, user_mxid, login_id, portal_id, portal_receiver, in_space,
                         preferred, last_read)
VALUES ($1, $2, $3, $4, $5, false, true, NULL)
ON CONFLICT DO NOTHING
"""
INSERT_MESSAGE = """
INSERT INTO message (bridge_id, id, part_id, mxid, room_id, room_receiver, sender_id, sender_mxid,
                     timestamp, edit_count, double_puppeted, thread_root_id, reply_to_id,
                     reply_to_part_id, send_txn_id, metadata)
VALUES ($1, $2, '', $3, $4, $5, $6, $7, $8, 0, false, $9, $10, NULL, NULL, $11::jsonb)
RETURNING rowid
"""
INSERT_MESSAGES_ONE_STATEMENT = """
INSERT INTO message (bridge_id, id, part_id, mxid, room_id, room_receiver, sender_id, sender_mxid,
                     timestamp, edit_count, double_puppeted, metadata)
SELECT $1, id, '', mxid, $2, $3, sender_id, sender_mxid, ts, 0, false, metadata::jsonb
FROM unnest($4::text[], $5::text[], $6::text[], $7::text[], $8::bigint[], $9::text[])
    AS t(id, mxid, sender_id, sender_mxid, ts, metadata)
RETURNING id, rowid
"""
ROWIDS_BY_ID = """
SELECT id, rowid FROM message WHERE bridge_id = $1 AND room_receiver = $2 AND id = ANY($3::text[])
"""


def fixture_sql(name: str) -> str:
    """A shipped fixture schema, e.g. ``bridge_v29.sql`` or ``synapse_subset.sql``."""
    return (FIXTURES / name).read_text()


def ghost_mxid(ghost_id: str, server_name: str) -> str:
    return f"@{synapse_writer.GHOST_PREFIX}{ghost_id}:{server_name}"


@dataclass(frozen=True)
class Contact:
    """A WhatsApp user as the bridge knows it (its ghost)."""

    ghost_id: str  # phone digits or lid-<n>
    jid: str  # <digits>@s.whatsapp.net or <n>@lid
    mxid: str
    displayname: str  # what Synapse shows; the ghost row may still have ''
    synced: bool  # False: ghost row has name '' / name_set false


@dataclass(frozen=True)
class Chat:
    """A portal: a WhatsApp chat and its Matrix room."""

    portal_id: str
    receiver: str  # '' for groups, the login ID for DMs
    room_id: str
    name: str
    room_type: str  # '' (group) or 'dm'
    members: tuple[Contact, ...]


@dataclass(frozen=True)
class Media:
    kind: MediaKind
    data: bytes
    mimetype: str
    filename: str
    caption: str = ""
    width: int | None = None
    height: int | None = None
    duration_ms: int | None = None


@dataclass(frozen=True)
class SentMessage:
    """One bridged message: the Synapse event and the committed bridge row."""

    rowid: int
    event_id: str
    chat: Chat
    sender: Contact
    wa_message_id: str  # message.id
    timestamp_ns: int
    committed_at_s: float  # time.time() right after the bridge INSERT committed
    event_type: str
    content: Mapping[str, Any]
    sender_mxid: str = ""
    reply_to_id: str | None = None
    thread_root_id: str | None = None


@dataclass(frozen=True)
class _Draft:
    """A message before it is sent: everything but the event ID and rowid."""

    chat: Chat
    sender: Contact
    sender_mxid: str
    wa_message_id: str
    timestamp_ns: int
    event_type: str
    content: JsonDict
    back_date: bool = True
    reply_to_id: str | None = None
    thread_root_id: str | None = None
    metadata: JsonDict = field(default_factory=lambda: {"sender_device_id": 0})


class BridgeSimulator:
    """Sends WhatsApp-like messages: Matrix event first, then the bridge row."""

    def __init__(
        self,
        bridge_db: Any,
        writer: synapse_writer.SynapseWriter,
        *,
        rng: random.Random,
        login_phone: str = "4915100000001",
        user_localpart: str = "alice",
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``bridge_db`` is an asyncpg pool or connection; ``clock`` gives WhatsApp times."""
        self._db = bridge_db
        self._writer = writer
        self._rng = rng
        self._clock = clock
        server = writer.server_name
        self.login_id = login_phone
        self.user_mxid = f"@{user_localpart}:{server}"
        self.self_contact = Contact(
            login_phone,
            f"{login_phone}@s.whatsapp.net",
            ghost_mxid(login_phone, server),
            user_localpart.title(),
            synced=True,
        )
        self.contacts: list[Contact] = []
        self.chats: list[Chat] = []
        self.sent: list[SentMessage] = []
        # End-to-bridge encryption: rooms listed here get m.room.encrypted events (Megolm).
        self.encryptor = megolm.Encryptor()
        self.encrypted_rooms: set[str] = set()

    def _wired_spec(self, draft: _Draft) -> synapse_writer.EventSpec:
        spec = _spec(draft)
        event_type, content = self._wire(spec.room_id, spec.event_type, spec.content)
        return dataclasses.replace(spec, event_type=event_type, content=content)

    def _wire(self, room_id: str, event_type: str, content: Mapping[str, Any]) -> tuple[str, Any]:
        """What goes to Synapse: the event itself, or its Megolm encryption in an encrypted
        room (the relation left in the clear as mautrix-go does, crypto/encryptmegolm.go)."""
        if room_id not in self.encrypted_rooms:
            return event_type, content
        return "m.room.encrypted", self.encryptor.encrypt(room_id, event_type, dict(content))

    # -- setup ---------------------------------------------------------------------------

    async def setup(self) -> None:
        """The bridge's user, its WhatsApp login and the login's own ghost."""
        await self._writer.ensure_user(self.user_mxid, self.self_contact.displayname)
        await self._writer.ensure_user(self.self_contact.mxid, self.self_contact.displayname)
        profile = json.dumps({"phone": "+" + self.login_id, "name": self.self_contact.displayname})
        async with self._connection() as conn, conn.transaction():
            await conn.execute(INSERT_USER, BRIDGE_ID, self.user_mxid)
            await conn.execute(
                INSERT_LOGIN,
                BRIDGE_ID,
                self.user_mxid,
                self.login_id,
                "+" + self.login_id,
                profile,
                '{"wa_device_id": 12}',
            )
        await self._insert_ghost(self.self_contact)

    async def add_contact(
        self, displayname: str, *, lid: bool = False, synced: bool = True
    ) -> Contact:
        """A ghost: registered in Synapse with its displayname; the bridge row named only if
        the bridge has synced the contact (otherwise name '' / name_set false)."""
        number = "".join(self._rng.choices("0123456789", k=15 if lid else 8))
        ghost_id, jid = (
            (f"lid-{number}", f"{number}@lid")
            if lid
            else (f"49151{number}", f"49151{number}@s.whatsapp.net")
        )
        contact = Contact(
            ghost_id, jid, ghost_mxid(ghost_id, self._writer.server_name), displayname, synced
        )
        await self._writer.ensure_user(contact.mxid, displayname)
        await self._insert_ghost(contact)
        self.contacts.append(contact)
        return contact

    async def create_group(self, name: str, members: Sequence[Contact]) -> Chat:
        portal_id = "1203630" + "".join(self._rng.choices("0123456789", k=11)) + "@g.us"
        return await self._create_portal(portal_id, "", name, "", tuple(members), None)

    async def create_dm(self, contact: Contact) -> Chat:
        return await self._create_portal(
            contact.jid, self.login_id, contact.displayname, "dm", (contact,), contact.ghost_id
        )

    async def ensure_world(self, *, groups: int = 3, dms: int = 2, group_size: int = 4) -> None:
        """A small realistic address book: groups and DMs, LID contacts, unsynced contacts."""
        if self.chats:
            return
        await self.setup()
        for i in range(groups * group_size + dms):
            name = f"{FIRST_NAMES[i % len(FIRST_NAMES)]} {chr(65 + i // len(FIRST_NAMES))}."
            await self.add_contact(name, lid=i % 3 == 2, synced=i % 4 != 3)
        for g in range(groups):
            members = self.contacts[g * group_size : (g + 1) * group_size]
            await self.create_group(GROUP_NAMES[g % len(GROUP_NAMES)], members)
        for contact in self.contacts[groups * group_size :]:
            await self.create_dm(contact)

    # -- single messages -----------------------------------------------------------------

    async def send_text(
        self,
        chat: Chat,
        sender: Contact,
        body: str,
        *,
        reply_to: SentMessage | None = None,
        thread_root: SentMessage | None = None,
        ts_ns: int | None = None,
        db: asyncpg.Connection | None = None,
        formatted_body: str | None = None,
    ) -> SentMessage:
        """A text; its row is inserted through ``db`` when given (an open transaction: the row
        commits when the caller commits), else in its own transaction."""
        content: JsonDict = {"msgtype": "m.text", "body": body}
        if formatted_body is not None:
            content["format"] = "org.matrix.custom.html"
            content["formatted_body"] = formatted_body
        draft = self._draft(chat, sender, "m.room.message", content, ts_ns, reply_to, thread_root)
        return await self._send(draft, db=db)

    async def send_media(
        self,
        chat: Chat,
        sender: Contact,
        media: Media,
        *,
        reply_to: SentMessage | None = None,
        ts_ns: int | None = None,
    ) -> SentMessage:
        """Upload first (the bridge reuploads WhatsApp media), then the event, then the row."""
        mxc = await self._writer.upload_media(
            media.data, media.mimetype, media.filename, sender.mxid
        )
        event_type, content = media_content(media, mxc)
        draft = self._draft(chat, sender, event_type, content, ts_ns, reply_to, None)
        return await self._send(draft)

    async def send_from_matrix_user(self, chat: Chat, body: str) -> SentMessage:
        """A message typed in Matrix: the user's own (live) event, the row names the login's
        own ghost as sender_id and the real user as sender_mxid."""
        content: JsonDict = {"msgtype": "m.text", "body": body}
        draft = self._draft(chat, self.self_contact, "m.room.message", content, None, None, None)
        draft = _replace(draft, sender_mxid=self.user_mxid, back_date=False)
        return await self._send(draft)

    async def edit(self, sent: SentMessage, body: str) -> str:
        """A WhatsApp edit as the bridge applies it: the ``m.replace`` event, then the row
        UPDATE in place (source-schemas.md §2.3). Returns the edit's event ID."""
        new_content: JsonDict = {"msgtype": "m.text", "body": body}
        event_type, content = self._wire(
            sent.chat.room_id,
            "m.room.message",
            {
                "msgtype": "m.text",
                "body": f"* {body}",
                "m.new_content": new_content,
                "m.relates_to": {"rel_type": "m.replace", "event_id": sent.event_id},
            },
        )
        edit_id = await self._writer.send_event(
            sent.chat.room_id,
            sent.sender_mxid or sent.sender.mxid,
            event_type,
            content,
            int(time.time() * 1000),
        )
        await self._db.execute(
            "UPDATE message SET metadata = jsonb_set(metadata, '{edits}',"
            " coalesce(metadata->'edits', '[]'::jsonb) || to_jsonb($2::text)) WHERE rowid = $1",
            sent.rowid,
            edit_id,
        )
        return edit_id

    async def react(self, sent: SentMessage, by: Contact, key: str) -> str:
        """A reaction: the ``m.reaction`` event (the bridge's reaction row is not archived)."""
        relation = {"rel_type": "m.annotation", "event_id": sent.event_id, "key": key}
        event_type, content = self._wire(
            sent.chat.room_id, "m.reaction", {"m.relates_to": relation}
        )
        return await self._writer.send_event(
            sent.chat.room_id, by.mxid, event_type, content, int(time.time() * 1000)
        )

    async def revoke(self, sent: SentMessage) -> str:
        """WhatsApp "delete for everyone": the event is redacted, then the row deleted."""
        redaction = await self._writer.redact(
            sent.chat.room_id, sent.event_id, sent.sender_mxid or sent.sender.mxid
        )
        await self._db.execute("DELETE FROM message WHERE rowid = $1", sent.rowid)
        return redaction

    async def history_sync(
        self, chat: Chat, count: int, start_ts_ns: int, *, step_s: int = 37
    ) -> list[SentMessage]:
        """Forward backfill as bridgev2 does it without batch sending: one by one, ``ts``
        back-dated events, new (high) rowids with old timestamps."""
        sent = []
        for i in range(count):
            sender = self._rng.choice(chat.members)
            ts_ns = start_ts_ns + i * step_s * NS_PER_S
            sent.append(await self.send_text(chat, sender, self._sentence(), ts_ns=ts_ns))
        return sent

    # -- bulk ------------------------------------------------------------------------------

    async def insert_many_in_one_transaction(
        self, chat: Chat, count: int, *, start_ts_ns: int | None = None, one_statement: bool = False
    ) -> list[SentMessage]:
        """N events (one bulk call on the writer), then N bridge rows in ONE transaction
        (one INSERT per row, or a single multi-row INSERT with ``one_statement``)."""
        base_ns = start_ts_ns if start_ts_ns is not None else self._now_ns()
        drafts = [
            self._draft(
                chat,
                self._rng.choice(chat.members),
                "m.room.message",
                {"msgtype": "m.text", "body": self._sentence()},
                base_ns + (i // 10) * NS_PER_S,
                None,
                None,
            )
            for i in range(count)
        ]
        specs = [self._wired_spec(d) for d in drafts]
        event_ids = await self._writer.send_events_bulk(specs)
        async with self._connection() as conn, conn.transaction():
            if one_statement:
                rowids = await self._insert_one_statement(conn, chat, drafts, event_ids)
            else:
                rowids = await self._insert_per_row(conn, chat, drafts, event_ids)
        committed_at = time.time()
        return [
            self._record(d, eid, rowids[d.wa_message_id], committed_at)
            for d, eid in zip(drafts, event_ids, strict=True)
        ]

    async def _insert_per_row(
        self, conn: Any, chat: Chat, drafts: Sequence[_Draft], event_ids: Sequence[str]
    ) -> dict[str, int]:
        args = [_row_args(d, eid) for d, eid in zip(drafts, event_ids, strict=True)]
        await conn.executemany(INSERT_MESSAGE, args)
        ids = [d.wa_message_id for d in drafts]
        rows = await conn.fetch(ROWIDS_BY_ID, BRIDGE_ID, chat.receiver, ids)
        return {r["id"]: r["rowid"] for r in rows}

    async def _insert_one_statement(
        self, conn: Any, chat: Chat, drafts: Sequence[_Draft], event_ids: Sequence[str]
    ) -> dict[str, int]:
        rows = await conn.fetch(
            INSERT_MESSAGES_ONE_STATEMENT,
            BRIDGE_ID,
            chat.portal_id,
            chat.receiver,
            [d.wa_message_id for d in drafts],
            list(event_ids),
            [d.sender.ghost_id for d in drafts],
            [d.sender_mxid for d in drafts],
            [d.timestamp_ns for d in drafts],
            [json.dumps(d.metadata) for d in drafts],
        )
        return {r["id"]: r["rowid"] for r in rows}

    # -- traffic ---------------------------------------------------------------------------

    async def run_traffic(
        self,
        rate_per_s: float,
        duration_s: float,
        on_sent: OnSent | None = None,
        *,
        stop: asyncio.Event | None = None,
    ) -> list[SentMessage]:
        """Mixed realistic traffic paced at ``rate_per_s`` for ``duration_s`` (or until
        ``stop``). Falls behind rather than bursting when the backends are slower."""
        await self.ensure_world()
        stop = stop or asyncio.Event()
        sent: list[SentMessage] = []
        began = time.monotonic()
        while not stop.is_set():
            due = began + len(sent) / rate_per_s
            if due - began >= duration_s:
                break
            if await _wait_until(stop, due):
                break
            message = await self.send_random()
            sent.append(message)
            if on_sent is not None and inspect.isawaitable(result := on_sent(message)):
                await result
        return sent

    async def send_random(self) -> SentMessage:
        """One message of a realistic mix: texts, replies, captioned media, voice notes,
        stickers, files and messages typed by the Matrix user."""
        chat = self._rng.choice(self.chats)
        sender = self._rng.choice(chat.members)
        earlier = [m for m in self.sent[-50:] if m.chat == chat]
        roll = self._rng.random()
        if roll < 0.15 and earlier:
            target = self._rng.choice(earlier)
            return await self.send_text(chat, sender, self._sentence(), reply_to=target)
        if roll < 0.35:
            return await self.send_media(chat, sender, self.random_media())
        if roll < 0.40:
            return await self.send_from_matrix_user(chat, self._sentence())
        return await self.send_text(chat, sender, self._sentence())

    def random_media(self) -> Media:
        kind: MediaKind = self._rng.choice(("image", "image", "voice", "file", "sticker", "video"))
        caption = self._sentence() if self._rng.random() < 0.6 else ""
        if kind == "image":
            w, h = self._rng.choice(((64, 48), (40, 40), (120, 90)))
            data = make_png(w, h, self._rng)
            return Media(
                "image", data, "image/png", f"IMG-{self._rng.randrange(10**6)}.png", caption, w, h
            )
        if kind == "sticker":
            return Media(
                "sticker",
                make_png(32, 32, self._rng),
                "image/png",
                "sticker.png",
                width=32,
                height=32,
            )
        if kind == "voice":
            return Media(
                "voice",
                self._rng.randbytes(900),
                "audio/ogg",
                "voice.ogg",
                duration_ms=self._rng.randrange(1000, 30000),
            )
        if kind == "video":
            return Media(
                "video", self._rng.randbytes(2000), "video/mp4", "clip.mp4", caption, 320, 240, 4000
            )
        return Media("file", self._rng.randbytes(1500), "application/pdf", "invoice.pdf", caption)

    # -- internals -------------------------------------------------------------------------

    def _draft(
        self,
        chat: Chat,
        sender: Contact,
        event_type: str,
        content: JsonDict,
        ts_ns: int | None,
        reply_to: SentMessage | None,
        thread_root: SentMessage | None,
    ) -> _Draft:
        relates = _relates_to(reply_to, thread_root)
        if relates:
            content = {**content, "m.relates_to": relates}
        sender_jid = self.self_contact.jid if sender == self.self_contact else sender.jid
        return _Draft(
            chat,
            sender,
            sender.mxid,
            f"{chat.portal_id}:{sender_jid}:{self._wa_id()}",
            ts_ns if ts_ns is not None else self._now_ns(),
            event_type,
            content,
            reply_to_id=reply_to.wa_message_id if reply_to else None,
            thread_root_id=thread_root.wa_message_id if thread_root else None,
            metadata={"sender_device_id": self._rng.choice((0, 0, 0, 1, 23))},
        )

    async def _send(self, draft: _Draft, *, db: asyncpg.Connection | None = None) -> SentMessage:
        """The bridge's order: Matrix event, then the autocommit INSERT of the row."""
        spec = _spec(draft)
        event_type, content = self._wire(spec.room_id, spec.event_type, spec.content)
        event_id = await self._writer.send_event(
            spec.room_id, spec.sender_mxid, event_type, content, spec.ts_ms
        )
        rowid = await (db or self._db).fetchval(INSERT_MESSAGE, *_row_args(draft, event_id))
        return self._record(draft, event_id, rowid, time.time())

    def _record(self, draft: _Draft, event_id: str, rowid: int, committed_at: float) -> SentMessage:
        message = SentMessage(
            rowid,
            event_id,
            draft.chat,
            draft.sender,
            draft.wa_message_id,
            draft.timestamp_ns,
            committed_at,
            draft.event_type,
            draft.content,
            draft.sender_mxid,
            draft.reply_to_id,
            draft.thread_root_id,
        )
        self.sent.append(message)
        del self.sent[:-1000]  # only recent messages are reply targets; bound the memory
        return message

    async def _create_portal(
        self,
        portal_id: str,
        receiver: str,
        name: str,
        room_type: str,
        members: tuple[Contact, ...],
        other_user_id: str | None,
    ) -> Chat:
        """The bridge bot creates the room, invites ghosts and the user, then stores the portal."""
        bot = self._writer.bot_mxid
        room_id = await self._writer.create_room(bot, name=name, is_direct=room_type == "dm")
        for mxid in [*(m.mxid for m in members), self.user_mxid]:
            await self._writer.join(room_id, mxid, inviter_mxid=bot)
        async with self._connection() as conn, conn.transaction():
            await conn.execute(
                INSERT_PORTAL,
                BRIDGE_ID,
                portal_id,
                receiver,
                room_id,
                other_user_id,
                name,
                room_type,
            )
            await conn.execute(
                INSERT_USER_PORTAL, BRIDGE_ID, self.user_mxid, self.login_id, portal_id, receiver
            )
        chat = Chat(portal_id, receiver, room_id, name, room_type, members)
        self.chats.append(chat)
        return chat

    async def _insert_ghost(self, contact: Contact) -> None:
        phone = None if contact.ghost_id.startswith("lid-") else contact.ghost_id
        identifiers = json.dumps([f"tel:+{phone}"] if phone and contact.synced else [])
        name = contact.displayname if contact.synced else ""
        metadata = json.dumps({"last_sync": int(self._clock())} if contact.synced else {})
        await self._db.execute(
            INSERT_GHOST, BRIDGE_ID, contact.ghost_id, name, contact.synced, identifiers, metadata
        )

    def _wa_id(self) -> str:
        """WhatsApp Web style (3EB0…) or phone style (32 hex) message IDs."""
        if self._rng.random() < 0.5:
            return "3EB0" + self._rng.randbytes(8).hex().upper()
        return self._rng.randbytes(16).hex().upper()

    def _sentence(self) -> str:
        return " ".join(self._rng.choices(WORDS, k=self._rng.randrange(1, 9)))

    def _now_ns(self) -> int:
        return int(self._clock()) * NS_PER_S  # WhatsApp timestamps have 1 s resolution

    def _connection(self) -> Any:
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


def media_content(media: Media, mxc: str) -> tuple[str, JsonDict]:
    """Event type and content as mautrix-whatsapp builds them (caption in body, MSC2530)."""
    info: JsonDict = {"mimetype": media.mimetype, "size": len(media.data)}
    if media.width is not None and media.height is not None:
        info |= {"w": media.width, "h": media.height}
    if media.duration_ms is not None:
        info["duration"] = media.duration_ms
    content: JsonDict = {
        "body": media.caption,
        "filename": media.filename,
        "url": mxc,
        "info": info,
    }
    if media.kind == "sticker":
        return "m.sticker", {"body": media.caption or media.filename, "url": mxc, "info": info}
    msgtype = {"image": "m.image", "video": "m.video", "file": "m.file"}.get(media.kind, "m.audio")
    content["msgtype"] = msgtype
    if media.kind == "voice":
        content["org.matrix.msc3245.voice"] = {}
        content["org.matrix.msc1767.audio"] = {"duration": media.duration_ms or 0, "waveform": []}
    return "m.room.message", content


def make_png(width: int, height: int, rng: random.Random) -> bytes:
    """A valid RGB PNG (stdlib only) so Synapse can thumbnail it."""
    colour = rng.randbytes(3)
    raw = b"".join(b"\x00" + colour * width for _ in range(height))

    def chunk(tag: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(tag + body)
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def _relates_to(reply_to: SentMessage | None, thread_root: SentMessage | None) -> JsonDict:
    if thread_root is not None:
        target = reply_to or thread_root
        return {
            "rel_type": "m.thread",
            "event_id": thread_root.event_id,
            "is_falling_back": reply_to is None,
            "m.in_reply_to": {"event_id": target.event_id},
        }
    if reply_to is not None:
        return {"m.in_reply_to": {"event_id": reply_to.event_id}}
    return {}


def _spec(draft: _Draft) -> synapse_writer.EventSpec:
    ts_ms = draft.timestamp_ns // 1_000_000 if draft.back_date else None
    return synapse_writer.EventSpec(
        draft.chat.room_id, draft.sender_mxid, draft.event_type, draft.content, ts_ms
    )


def _row_args(draft: _Draft, event_id: str) -> tuple[Any, ...]:
    chat = draft.chat
    return (
        BRIDGE_ID,
        draft.wa_message_id,
        event_id,
        chat.portal_id,
        chat.receiver,
        draft.sender.ghost_id,
        draft.sender_mxid,
        draft.timestamp_ns,
        draft.thread_root_id,
        draft.reply_to_id,
        json.dumps(draft.metadata),
    )


def _replace(draft: _Draft, **changes: Any) -> _Draft:
    return dataclasses.replace(draft, **changes)


async def _wait_until(stop: asyncio.Event, due_monotonic: float) -> bool:
    """Pace without oversleeping a stop request; True if stop was set."""
    delay = due_monotonic - time.monotonic()
    if delay <= 0:
        return stop.is_set()
    try:
        await asyncio.wait_for(stop.wait(), timeout=delay)
    except TimeoutError:
        return False
    return True
