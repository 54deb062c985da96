"""Decrypt ``m.room.encrypted`` events with the bridge's Megolm sessions (vodozemac).

vodozemac reads mautrix-go's pickles directly: ``InboundGroupSession.from_libolm_pickle`` takes
the libolm pickle (base64 of AES-256-CBC + 8-byte HMAC-SHA-256, keys from HKDF of the pickle key
with info "Pickle": mautrix-go ``crypto/goolm/libolmpickle/pickle.go``; vodozemac
``src/utilities/libolm_compat.rs``) and the pickle key as raw bytes, which is what bridgev2
passes (``bridgev2/matrix/cryptostore.go``: ``[]byte(pickleKey)``). libolm is not needed.

Unpickled sessions are kept in a bounded LRU. A missing session is never cached (it may
arrive any moment), nor is a withheld one (mautrix-go's PutGroupSession clears withheld_code
when the key comes after all). Nothing is ever written back.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import json
import logging
from collections.abc import Callable, Iterable
from typing import Any

import vodozemac

from listener.core import megolm, models
from listener.e2ee import sessions

logger = logging.getLogger(__name__)

# vodozemac 0.10.0's type stubs omit the classmethod the library has (src/group_sessions.rs in
# matrix-nio/vodozemac-python): typed here once.
_from_libolm_pickle: Callable[[str, bytes], vodozemac.InboundGroupSession] = (
    vodozemac.InboundGroupSession.from_libolm_pickle  # type: ignore[attr-defined]
)

Observe = Callable[[str], None]
_YIELD_EVERY = 32  # events decrypted between two turns of the event loop


@dataclasses.dataclass(frozen=True, slots=True)
class _Unavailable:
    """Why a session cannot be used (no session, withheld, bad key, unreadable pickle)."""

    status: megolm.Status
    error: str


_Session = vodozemac.InboundGroupSession | _Unavailable


class Decryptor:
    def __init__(
        self,
        store: sessions.Sessions,
        *,
        pickle_key: bytes,
        cache_size: int,
        observe: Observe | None = None,
    ) -> None:
        self._store = store
        self._pickle_key = pickle_key
        self._cache: collections.OrderedDict[sessions.SessionKey, vodozemac.InboundGroupSession]
        self._cache = collections.OrderedDict()
        self._cache_size = cache_size
        self._observe = observe or (lambda _result: None)
        # Set once any pickle opened with the key: a failed MAC is then a damaged pickle.
        self.key_opened_a_session = False
        self._bad_key_logged = False

    @property
    def cached_sessions(self) -> int:
        return len(self._cache)

    async def decrypt_events(
        self, events: Iterable[models.SynapseEvent]
    ) -> list[models.SynapseEvent]:
        """``events`` with every ``m.room.encrypted`` one (and edit) replaced by its plaintext
        event, or marked with why it could not be decrypted; others unchanged."""
        events = list(events)
        parsed = {
            e.event_id: _parse(e) for e in _with_edits(events) if e.event_type == megolm.ENCRYPTED
        }
        if not parsed:
            return events
        wanted = {
            (e.room_id, p[1].session_id)
            for e in _with_edits(events)
            if isinstance(p := parsed.get(e.event_id), tuple)
        }
        found = await self._sessions(wanted)
        shown = []
        for n, event in enumerate(events, start=1):
            shown.append(self._event(event, parsed, found, with_edits=True))
            if n % _YIELD_EVERY == 0:
                # ~0.1 ms of CPU per event (the Ed25519 check, AES, JSON): a reconciliation
                # page of 1,000 would hold the event loop for 100+ ms and stall live traffic.
                await asyncio.sleep(0)
        return shown

    def _event(
        self,
        event: models.SynapseEvent,
        parsed: dict[str, _Parsed],
        found: dict[sessions.SessionKey, _Session],
        *,
        with_edits: bool,
    ) -> models.SynapseEvent:
        if with_edits and event.edits:
            edited = tuple(self._event(e, parsed, found, with_edits=False) for e in event.edits)
            event = dataclasses.replace(event, edits=edited)
        outcome = parsed.get(event.event_id)
        if outcome is None:
            return event
        if isinstance(outcome, _Skip):
            return event
        if isinstance(outcome, _Unavailable):
            return self._failed(event, outcome.status, outcome.error)
        pdu, encrypted = outcome
        session = found.get((event.room_id, encrypted.session_id))
        if session is None:
            return self._failed(event, megolm.Status.NO_SESSION, "no session", pdu)
        if isinstance(session, _Unavailable):
            if session.status == megolm.Status.BAD_KEY:
                self._log_bad_key()
            return self._failed(event, session.status, session.error, pdu)
        return self._decrypt(event, pdu, encrypted, session)

    def _decrypt(
        self,
        event: models.SynapseEvent,
        pdu: dict[str, Any],
        encrypted: megolm.Encrypted,
        session: vodozemac.InboundGroupSession,
    ) -> models.SynapseEvent:
        try:
            message = vodozemac.MegolmMessage.from_base64(encrypted.ciphertext)
        except ValueError:
            return self._failed(event, megolm.Status.ERROR, "invalid ciphertext", pdu)
        if message.message_index() < session.first_known_index:
            # The session the bridge holds starts later (a forwarded key, or the bridge
            # ratchets sessions on decrypt): a better copy may still arrive, so retry later,
            # reading the session again then (mautrix-go replaces it when a better one comes).
            self._cache.pop((event.room_id, encrypted.session_id), None)
            return self._failed(
                event, megolm.Status.NO_SESSION, "message index before the session's first", pdu
            )
        try:
            plaintext = session.decrypt(message).plaintext
        except ValueError:
            return self._failed(event, megolm.Status.ERROR, "ciphertext failed verification", pdu)
        try:
            event_type, content = megolm.plaintext_event(
                plaintext, room_id=event.room_id, cleartext_relation=encrypted.relates_to
            )
        except megolm.Undecryptable as exc:
            logger.warning(
                "rejected decrypted event %s in %s: %s",
                event.event_id,
                event.room_id,
                exc,
                extra={"action": "decryption_rejected"},
            )
            return self._failed(event, megolm.Status.ERROR, str(exc), pdu)
        self._observe(megolm.Status.DECRYPTED)
        return megolm.decrypted(event, pdu, event_type, content)

    def _failed(
        self,
        event: models.SynapseEvent,
        status: megolm.Status,
        error: str,
        pdu: dict[str, Any] | None = None,
    ) -> models.SynapseEvent:
        self._observe(status)
        return megolm.failed(event, pdu if pdu is not None else _pdu(event), status, error)

    def _log_bad_key(self) -> None:
        """Once per process: the metric counts every event, the log says what to do."""
        if not self._bad_key_logged:
            self._bad_key_logged = True
            logger.error(
                "BRIDGE_PICKLE_KEY does not open the bridge's Megolm sessions: encrypted "
                "messages are archived as ciphertext (decryption = bad_key). Set it to the "
                "bridge config's encryption.pickle_key",
                extra={"action": "decryption_bad_key"},
            )

    async def _sessions(
        self, wanted: set[sessions.SessionKey]
    ) -> dict[sessions.SessionKey, _Session]:
        found: dict[sessions.SessionKey, _Session] = {}
        for key in wanted:
            cached = self._cache.get(key)
            if cached is not None:
                self._cache.move_to_end(key)
                found[key] = cached
        stored = await self._store.fetch(wanted - found.keys())
        for key, row in stored.items():
            found[key] = self._unpickle(key, row)
        if self.key_opened_a_session:  # in any order: then a failed MAC is a damaged pickle
            for key, session in found.items():
                if isinstance(session, _Unavailable) and session.status == megolm.Status.BAD_KEY:
                    found[key] = _Unavailable(megolm.Status.ERROR, "unreadable session pickle")
        return found

    def _unpickle(self, key: sessions.SessionKey, row: sessions.StoredSession) -> _Session:
        if row.pickle is None:
            return _Unavailable(megolm.Status.WITHHELD, f"withheld: {row.withheld_code or '?'}")
        try:
            session = _from_libolm_pickle(row.pickle, self._pickle_key)
        except vodozemac.LibolmPickleException as exc:
            # A failed MAC is what a wrong pickle key gives, and a damaged pickle too: once the
            # key has opened another session, it is the pickle.
            if "couldn't be decrypted" in str(exc) and not self.key_opened_a_session:
                return _Unavailable(megolm.Status.BAD_KEY, "pickle does not open with the key")
            return _Unavailable(megolm.Status.ERROR, "unreadable session pickle")
        self.key_opened_a_session = True
        self._cache[key] = session
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return session


def key_opens(pickles: Iterable[str], pickle_key: bytes) -> bool | None:
    """Whether the key opens any of these session pickles (None: there were none to try).

    One is enough: a wrong key opens none, and a damaged pickle is one among many.
    """
    tried = False
    for pickle in pickles:
        tried = True
        try:
            _from_libolm_pickle(pickle, pickle_key)
        except vodozemac.LibolmPickleException:
            continue
        return True
    return False if tried else None


@dataclasses.dataclass(frozen=True, slots=True)
class _Skip:
    """Nothing to decrypt: Synapse pruned the redacted event's content to ``{}``."""


_Parsed = tuple[dict[str, Any], megolm.Encrypted] | _Unavailable | _Skip


def _with_edits(events: list[models.SynapseEvent]) -> Iterable[models.SynapseEvent]:
    for event in events:
        yield event
        yield from event.edits


def _pdu(event: models.SynapseEvent) -> dict[str, Any]:
    try:
        pdu = json.loads(event.json_text)
    except (ValueError, RecursionError):
        return {}
    return pdu if isinstance(pdu, dict) else {}


def _parse(event: models.SynapseEvent) -> _Parsed:
    pdu = _pdu(event)
    content = pdu.get("content")
    if not isinstance(content, dict):
        return _Unavailable(megolm.Status.ERROR, "event has no content object")
    if not content:
        return _Skip()
    try:
        return pdu, megolm.parse(content)
    except megolm.Undecryptable as exc:
        return _Unavailable(megolm.Status.ERROR, str(exc))
