"""The bridge database's schema on real PostgreSQL: a legacy (pre-bridgev2) mautrix schema is
refused by `doctor` and at start in one line; a bridgev2 one is accepted and its network named.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from listener import service
from listener.core import errors
from listener.ops import doctor, doctor_facts
from listener.sources import bridge as bridge_source
from tests import pg
from tests.conftest import World, psql_file

# The tables of mautrix-whatsapp v0.10 (Go, before bridgev2), shortened from its
# database/upgrades/00-latest-revision.sql (mautrix/whatsapp before commit ea2d8ba), and the
# ownership row go.mau.fi/util dbutil wrote for it.
LEGACY_WHATSAPP = """
CREATE TABLE "user" (mxid TEXT PRIMARY KEY, username TEXT UNIQUE, agent SMALLINT,
                     device SMALLINT, management_room TEXT, space_room TEXT);
CREATE TABLE portal (jid TEXT, receiver TEXT, mxid TEXT UNIQUE, name TEXT NOT NULL,
                     topic TEXT NOT NULL, avatar TEXT NOT NULL, encrypted BOOLEAN NOT NULL
                     DEFAULT false, PRIMARY KEY (jid, receiver));
CREATE TABLE puppet (username TEXT PRIMARY KEY, displayname TEXT, avatar TEXT,
                     custom_mxid TEXT, access_token TEXT);
CREATE TABLE message (chat_jid TEXT, chat_receiver TEXT, jid TEXT, mxid TEXT UNIQUE,
                      sender TEXT, sender_mxid TEXT NOT NULL DEFAULT '', timestamp BIGINT,
                      sent BOOLEAN, type TEXT, PRIMARY KEY (chat_jid, chat_receiver, jid));
CREATE TABLE reaction (chat_jid TEXT, chat_receiver TEXT, target_jid TEXT, sender TEXT,
                       mxid TEXT NOT NULL, jid TEXT NOT NULL,
                       PRIMARY KEY (chat_jid, chat_receiver, target_jid, sender));
CREATE TABLE version (version INTEGER, compat INTEGER);
INSERT INTO version VALUES (57, 45);
CREATE TABLE database_owner (key INTEGER PRIMARY KEY DEFAULT 0, owner TEXT NOT NULL);
INSERT INTO database_owner (key, owner) VALUES (0, 'mautrix-whatsapp');
"""

LEGACY_LINE = (
    "a legacy (pre-bridgev2) mautrix schema (database_owner 'mautrix-whatsapp', table puppet, "
    "portal.jid, message.chat_jid); expected the bridgev2 tables message, portal, ghost, "
    "reaction, user_login, each with a bridge_id column"
)


@pytest.fixture
async def legacy_bridge() -> AsyncIterator[str]:
    """A throwaway database holding a legacy mautrix-whatsapp schema; its URL."""
    name = pg.unique_name("t_legacy_bridge")
    url = await pg.create_database(name)
    try:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(LEGACY_WHATSAPP)
        finally:
            await conn.close()
        yield url
    finally:
        await pg.drop_database(name)


async def test_doctor__refuses_a_legacy_bridge_schema_in_one_line(
    world: World, legacy_bridge: str
) -> None:
    config = world.settings(whatsapp_db_url=legacy_bridge)
    results = await doctor_facts.diagnose(config, max_clock_skew_s=5.0)
    failed = [r.line() for r in results if r.level is doctor.Level.FAIL]
    assert failed == [
        f"FAIL  bridge schema: {LEGACY_LINE}. Fix: point WHATSAPP_DB_URL at a bridgev2 bridge's "
        "database; to convert a legacy one, start once a bridge release that still migrates "
        "legacy databases (for mautrix-whatsapp v0.11.0 to v0.12.4: mautrix/whatsapp "
        "legacymigrate.go)"
    ]
    checks = {r.check: r.level for r in results}
    assert checks["bridge checks"] is doctor.Level.SKIP
    assert "bridge trigger" not in checks
    assert checks["synapse grants"] is doctor.Level.OK


async def test_start__refuses_a_legacy_bridge_schema_instead_of_waiting(
    world: World, legacy_bridge: str
) -> None:
    svc = service.Service(world.settings(whatsapp_db_url=legacy_bridge, metrics_addr="127.0.0.1:0"))
    try:
        with pytest.raises(errors.SchemaError) as refused:
            await asyncio.wait_for(svc.open_when_reachable(), 10)
    finally:
        await svc.http.stop()
    assert str(refused.value) == f"the bridge database is {LEGACY_LINE}"
    assert svc.waiting_for is None  # refused at once, not waited for like a database that is down


async def test_doctor__names_the_network_from_database_owner_or_from_its_tables(
    world: World,
) -> None:
    # What mautrix-whatsapp's bridgev2 release creates next to the bridgev2 tables.
    await world.bridge.execute(
        "CREATE TABLE whatsapp_version (version INTEGER, compat INTEGER);"
        "CREATE TABLE database_owner (key INTEGER PRIMARY KEY DEFAULT 0, owner TEXT NOT NULL);"
        "INSERT INTO database_owner VALUES (0, 'megabridge/mautrix-whatsapp')"
    )
    results = await doctor_facts.diagnose(world.settings(), max_clock_skew_s=5.0)
    lines = [r.line() for r in results if r.check == "bridge schema"]
    assert lines == [
        "OK    bridge schema: bridgev2, network whatsapp "
        "(database_owner 'megabridge/mautrix-whatsapp')"
    ]

    # The least-privilege role (sql/grants.sql) may not read database_owner: the tables tell.
    role = f"archiver_{uuid.uuid4().hex[:8]}"
    psql_file(world.bridge_url, pg.REPO / "sql" / "grants.sql", "target=bridge", f"role={role}")
    try:
        parts = urlsplit(world.bridge_url)
        netloc = f"{role}@{parts.hostname}:{parts.port or 5432}"
        conn = await asyncpg.connect(urlunsplit(parts._replace(netloc=netloc)))
        try:
            facts = await bridge_source.read_schema(conn)
        finally:
            await conn.close()
    finally:
        await world.bridge.execute(f'DROP OWNED BY "{role}"')
        await pg.admin_execute(f'DROP ROLE IF EXISTS "{role}"')
    assert facts.owner is None
    assert {"message", "ghost", "whatsapp_version", "database_owner"} <= set(facts.columns)
    assert doctor.bridgev2(doctor.DbFacts("bridge", schema=facts)).line() == (
        "OK    bridge schema: bridgev2, network whatsapp (table whatsapp_version)"
    )


async def test_start__waits_for_a_bridge_database_without_tables_yet() -> None:
    name = pg.unique_name("t_empty_bridge")
    url = await pg.create_database(name)
    try:
        pool = await asyncpg.create_pool(url, min_size=1, max_size=1)
        try:
            with pytest.raises(errors.SourceError, match="no tables yet"):
                await bridge_source.check_schema(pool)
            await pool.execute(LEGACY_WHATSAPP)
            with pytest.raises(errors.SchemaError, match="legacy"):
                await bridge_source.check_schema(pool)
        finally:
            await pool.close()
    finally:
        await pg.drop_database(name)
