"""The bridge's end-to-bridge encryption, simulated with a real Megolm implementation.

Outbound sessions are vodozemac's ``GroupSession``; each one's inbound copy is stored in
``crypto_megolm_inbound_session`` as mautrix-go stores it: the libolm pickle encrypted with the
pickle key. vodozemac can read libolm pickles but not write them, so this module writes them,
from the format as mautrix-go's pure-Go libolm port defines it (nothing copied):

- plaintext (``crypto/goolm/session/megolm_inbound_session.go`` PickleLibOlm, version 2):
  u32 version=2, initial ratchet, latest ratchet (each 128 bytes of ratchet data then a u32
  counter, ``crypto/goolm/megolm/megolm.go``), the 32-byte Ed25519 signing key, a bool
  "signing key verified"; integers big-endian (``crypto/goolm/libolmpickle/encoder.go``);
- encryption (``crypto/goolm/libolmpickle/pickle.go``, ``crypto/goolm/aessha2/aessha2.go``):
  HKDF-SHA-256 of the pickle key, no salt, info "Pickle", 80 bytes = AES key, HMAC key, IV;
  AES-256-CBC with PKCS#7 padding; the first 8 bytes of HMAC-SHA-256 over the ciphertext are
  appended; unpadded standard base64 (``crypto/goolm/goolmbase64``).

For tests, the demo and the benchmarks only.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import struct
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import vodozemac
from cryptography.hazmat.primitives import hashes, padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

ALGORITHM = "m.megolm.v1.aes-sha2"
_PICKLE_VERSION = 2
_MAC_LENGTH = 8


def _b64decode(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))


def _b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def libolm_pickle(session_key_b64: str, pickle_key: bytes) -> str:
    """The libolm pickle of the inbound session a session key (m.room_key's) creates."""
    raw = _b64decode(session_key_b64)
    # Session sharing format v2: version byte, u32 index, ratchet, Ed25519 key, signature.
    if len(raw) != 1 + 4 + 128 + 32 + 64 or raw[0] != 2:
        raise ValueError("not a Megolm session key")
    (index,) = struct.unpack(">I", raw[1:5])
    ratchet = raw[5:133] + struct.pack(">I", index)
    plain = struct.pack(">I", _PICKLE_VERSION) + ratchet + ratchet + raw[133:165] + b"\x01"
    return encrypt_pickle(plain, pickle_key)


def encrypt_pickle(plaintext: bytes, pickle_key: bytes) -> str:
    keys = HKDF(algorithm=hashes.SHA256(), length=80, salt=None, info=b"Pickle").derive(pickle_key)
    aes_key, mac_key, iv = keys[:32], keys[32:64], keys[64:]
    padder = padding.PKCS7(128).padder()
    padded = padder.update(plaintext) + padder.finalize()
    encryptor = Cipher(algorithms.AES(aes_key), modes.CBC(iv)).encryptor()
    ciphertext = encryptor.update(padded) + encryptor.finalize()
    mac = hmac.new(mac_key, ciphertext, hashlib.sha256).digest()[:_MAC_LENGTH]
    return _b64encode(ciphertext + mac)


@dataclass
class OutboundSession:
    room_id: str
    session: vodozemac.GroupSession
    session_key: str  # at index 0, what m.room_key shares
    sender_key: str = field(default_factory=lambda: _b64encode(bytes(32)))

    @property
    def session_id(self) -> str:
        return self.session.session_id


@dataclass
class Encryptor:
    """One device's outbound Megolm sessions, one per room (as mautrix-go keeps them), and
    the encryption of events as ``crypto/encryptmegolm.go`` does it."""

    msc4392: bool = False  # seal replies and reactions' relations (MSC4392)
    sessions: dict[str, OutboundSession] = field(default_factory=dict)

    def session(self, room_id: str) -> OutboundSession:
        if room_id not in self.sessions:
            self.rotate(room_id)
        return self.sessions[room_id]

    def rotate(self, room_id: str) -> OutboundSession:
        group = vodozemac.GroupSession()
        self.sessions[room_id] = OutboundSession(room_id, group, group.session_key.to_base64())
        return self.sessions[room_id]

    def encrypt(
        self, room_id: str, event_type: str, content: dict[str, Any], *, plaintext_room: str = ""
    ) -> dict[str, Any]:
        """The ``m.room.encrypted`` content for an event (``plaintext_room`` forges the room
        named inside the ciphertext, for the wrong-room check)."""
        outbound = self.session(room_id)
        payload = {"room_id": plaintext_room or room_id, "type": event_type, "content": content}
        message = outbound.session.encrypt(json.dumps(payload).encode())
        encrypted: dict[str, Any] = {
            "algorithm": ALGORITHM,
            "ciphertext": message.to_base64(),
            "session_id": outbound.session_id,
            "sender_key": outbound.sender_key,
            "device_id": "ARCHIVERSIM",
        }
        relation = content.get("m.relates_to")
        if isinstance(relation, dict):
            relation = dict(relation)
            if self.msc4392:
                relation.pop("m.in_reply_to", None)
                relation.pop("is_falling_back", None)
                if event_type == "m.reaction" or "rel_type" not in relation:
                    relation = None
            if relation:
                encrypted["m.relates_to"] = relation
        return encrypted


async def store_session(
    db: Any,
    outbound: OutboundSession,
    pickle_key: bytes,
    *,
    account_id: str = "",
    session_key: str | None = None,
) -> None:
    """What mautrix-go's PutGroupSession writes (crypto/sql_store.go), for one inbound copy."""
    pickle = libolm_pickle(session_key or outbound.session_key, pickle_key)
    await db.execute(
        "INSERT INTO crypto_megolm_inbound_session (account_id, session_id, sender_key,"
        " signing_key, room_id, session, forwarding_chains, received_at, key_source)"
        " VALUES ($1, $2, $3, $4, $5, $6, '', $7, 'direct')"
        " ON CONFLICT (session_id, account_id) DO UPDATE SET withheld_code = NULL,"
        " withheld_reason = NULL, session = excluded.session, room_id = excluded.room_id",
        account_id,
        outbound.session_id,
        outbound.sender_key,
        outbound.sender_key,
        outbound.room_id,
        pickle.encode("ascii"),
        datetime.now(UTC).replace(tzinfo=None),
    )


async def store_withheld(
    db: Any, outbound: OutboundSession, code: str, *, account_id: str = ""
) -> None:
    """What mautrix-go's PutWithheldGroupSession writes: no session, a withheld code."""
    await db.execute(
        "INSERT INTO crypto_megolm_inbound_session (account_id, session_id, sender_key, room_id,"
        " withheld_code, withheld_reason, received_at) VALUES ($1, $2, $3, $4, $5, $6, $7)"
        " ON CONFLICT (session_id, account_id) DO NOTHING",
        account_id,
        outbound.session_id,
        outbound.sender_key,
        outbound.room_id,
        code,
        "withheld by the simulator",
        datetime.now(UTC).replace(tzinfo=None),
    )
