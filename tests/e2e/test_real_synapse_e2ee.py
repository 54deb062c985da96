"""An encrypted portal against a REAL Synapse: the simulated bridge sends Megolm-encrypted
events (vodozemac) through Synapse's client-server API, as mautrix-go does in a room with
end-to-bridge encryption, and stores its inbound sessions as libolm pickles in the crypto store.
The archiver reads Synapse's own tables and archives the plaintext."""

from __future__ import annotations

import asyncio
import json

import pytest

from listener.sim import megolm
from tests.conftest import wait_until
from tests.e2e.test_real_synapse import real_synapse_world
from tests.synapse_server import SynapseServer

pytestmark = pytest.mark.synapse

PICKLE_KEY = "real-synapse-pickle-key"


async def test_real_synapse__encrypted_portal_is_archived_as_plaintext(
    synapse_server: SynapseServer, bridge_template: str, archive_template: str
) -> None:
    async with real_synapse_world(synapse_server, bridge_template, archive_template) as (
        world,
        _writer,
    ):
        sim = world.sim
        await sim.setup()
        known = await sim.add_contact("Lena Vogel")
        other = await sim.add_contact("Chen Li", lid=True)
        group = await sim.create_group("Encrypted crew", [known, other])
        sim.encrypted_rooms.add(group.room_id)
        sim.encryptor = megolm.Encryptor(msc4392=True)
        await megolm.store_session(
            world.bridge, sim.encryptor.session(group.room_id), PICKLE_KEY.encode()
        )
        async with world.running(
            bridge_pickle_key=PICKLE_KEY, reconcile_grace_s=0.0, reconcile_interval_s=0.5
        ) as svc:
            await asyncio.wait_for(svc.listener.connected.wait(), 10)
            text = await sim.send_text(group, known, "Grüße, verschlüsselt 🙂")
            reply = await sim.send_text(group, other, "encrypted reply", reply_to=text)
            typed = await sim.send_from_matrix_user(group, "typed in Element")
            await world.wait_archived({text.event_id, reply.event_id, typed.event_id}, timeout_s=20)
            await sim.edit(text, "Grüße, bearbeitet")
            reaction = await sim.react(text, other, "👍")

            async def settled() -> bool:
                row = await world.archive.fetchrow(
                    "SELECT m.body, r.emoji FROM messages m LEFT JOIN reactions r"
                    " ON r.reaction_event_id = $2 WHERE m.event_id = $1",
                    text.event_id,
                    reaction,
                )
                return row is not None and tuple(row) == ("Grüße, bearbeitet", "👍")

            await wait_until(settled, timeout_s=20, what="the decrypted edit and reaction")

        stored = await world.synapse.fetchval(
            "SELECT json FROM event_json WHERE event_id = $1", text.event_id
        )
        assert json.loads(stored)["type"] == "m.room.encrypted"
        rows = {
            r["event_id"]: r
            for r in await world.archive.fetch(
                "SELECT event_id, body, decryption, reply_to_event_id FROM messages"
            )
        }
        assert rows[text.event_id]["decryption"] == "decrypted"
        assert rows[reply.event_id]["reply_to_event_id"] == text.event_id
        assert rows[typed.event_id]["body"] == "typed in Element"
        assert len(rows) == 3
