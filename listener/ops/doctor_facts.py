"""The I/O half of ``archiver-db doctor``: fetch facts from each database and the media store,
then run the pure checks in :mod:`listener.ops.doctor` over them.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

from listener import settings
from listener.core import errors
from listener.db import connect as pgconnect
from listener.db import queries
from listener.e2ee import decryptor
from listener.ops import doctor
from listener.schema import migrate
from listener.sources import bridge as bridge_source

MEDIA_SAMPLE = 5
MEGOLM_SAMPLE = 5
CONNECT_TIMEOUT_S = 10.0


async def diagnose(config: settings.Settings, *, max_clock_skew_s: float) -> list[doctor.Result]:
    urls = {
        "bridge": config.whatsapp_db_url.get_secret_value(),
        "synapse": config.synapse_db_url.get_secret_value(),
    }
    if config.archive_db_url is not None:
        urls["archive"] = config.archive_db_url.get_secret_value()
    key = config.bridge_pickle_key
    e2ee = _E2ee(key.get_secret_value().encode("utf-8") if key else None, config.bridge_id)
    facts = await asyncio.gather(*(gather_db(name, url, e2ee) for name, url in urls.items()))
    dbs = {db.name: db for db in facts}
    store = None
    if config.media_store_path is not None:
        store = await asyncio.to_thread(
            media_store_facts, config.media_store_path, dbs["synapse"].media_ids or []
        )
    return evaluate(
        dbs,
        store,
        channel=config.notify_channel,
        max_clock_skew_s=max_clock_skew_s,
        pickle_key_set=key is not None,
    )


@dataclass(frozen=True)
class _E2ee:
    pickle_key: bytes | None = field(repr=False)
    account_id: str = ""


def evaluate(
    dbs: dict[str, doctor.DbFacts],
    store: doctor.MediaStoreFacts | None,
    *,
    channel: str,
    max_clock_skew_s: float,
    pickle_key_set: bool = False,
) -> list[doctor.Result]:
    """Every check, in the order an operator fixes things (pure)."""
    results: list[doctor.Result] = []
    for db in dbs.values():
        results.append(doctor.connection(db))
        if db.error is not None:
            results.append(doctor.Result(f"{db.name} checks", doctor.Level.SKIP, "not connected"))
            continue
        if db.name == "bridge":
            results.append(doctor.bridgev2(db))
            if results[-1].level is doctor.Level.FAIL:
                results.append(doctor.Result("bridge checks", doctor.Level.SKIP, "not bridgev2"))
                continue
        if db.name == "archive":
            results.append(doctor.migrated(db))
        results.append(doctor.grants(db))
        if db.name == "bridge":
            excess = {k: db.privileges.get(k) for k in doctor.EXCESS}
            results.append(doctor.least_privilege(db, excess))
            results.append(doctor.trigger(db, channel))
            archive = dbs.get("archive")
            archive = archive if archive is not None and archive.error is None else None
            results.append(doctor.e2ee(db, archive, key_set=pickle_key_set))
        results.extend(doctor.columns(db))
    synapse = dbs.get("synapse")
    has_media = bool(synapse.media_ids) if synapse and synapse.error is None else None
    results.append(doctor.media_store(store, has_local_media=has_media))
    results.append(doctor.clock_skew(list(dbs.values()), max_skew_s=max_clock_skew_s))
    return results


async def gather_db(name: str, url: str, e2ee: _E2ee | None = None) -> doctor.DbFacts:
    facts = doctor.DbFacts(name)
    try:
        conn = await pgconnect.connect(url, application_name="archiver-db:doctor")
    except errors.ArchiverError as exc:  # pgconnect names the host, never the password
        facts.error = str(exc)
        return facts
    try:
        await _fill(conn, facts)
        await _fill_e2ee(conn, facts, e2ee or _E2ee(None))
    except (*pgconnect.CONNECTION_ERRORS, asyncpg.PostgresError) as exc:
        facts.error = pgconnect.describe(exc)
    finally:
        await conn.close()
    return facts


async def _fill(conn: asyncpg.Connection, facts: doctor.DbFacts) -> None:
    before = time.time()
    server = await conn.fetchrow(queries.load("doctor_server"))
    after = time.time()
    facts.version_num = server["version_num"]
    facts.version = server["version"]
    facts.user = server["user_name"]
    facts.superuser = server["superuser"]
    facts.clock_offset_s = server["server_now"].timestamp() - (before + after) / 2
    wanted = await _wanted_privileges(conn, facts.name)
    rows = await conn.fetch(
        queries.load("doctor_privileges"), [r for r, _ in wanted], [p for _, p in wanted]
    )
    facts.privileges = {(r["relation"], r["privilege"]): r["granted"] for r in rows}
    tables = list(doctor.COLUMNS.get(facts.name, {}))
    for r in await conn.fetch(queries.load("doctor_columns"), tables):
        facts.columns.setdefault(r["table_name"], set()).add(r["column_name"])
    if facts.name == "bridge":
        facts.schema = await bridge_source.read_schema(conn)
        facts.triggers = [
            doctor.Trigger(
                r["name"],
                r["schema_name"],
                r["table_name"],
                r["enabled"],
                r["channel"],
                r["on_insert"],
                r["per_statement"],
            )
            for r in await conn.fetch(queries.load("doctor_triggers"))
        ]
    if facts.name == "archive":
        facts.pending_migrations = await migrate.pending(conn)
    if facts.name == "synapse" and facts.privileges.get(("local_media_repository", "SELECT")):
        rows = await conn.fetch(queries.load("doctor_media_sample"), MEDIA_SAMPLE)
        facts.media_ids = [r["media_id"] for r in rows]


async def _fill_e2ee(conn: asyncpg.Connection, facts: doctor.DbFacts, e2ee: _E2ee) -> None:
    if facts.name == "archive" and not facts.pending_migrations:  # 0006 made the columns
        rows = await conn.fetch(queries.load("sink_decryption_counts"))
        facts.decryption = {r["status"]: (r["messages"], r["rooms"]) for r in rows}
    if facts.name == "bridge" and e2ee.pickle_key and facts.privileges.get(doctor.MEGOLM_SESSIONS):
        rows = await conn.fetch(
            queries.load("doctor_megolm_sample"), e2ee.account_id, MEGOLM_SAMPLE
        )
        pickles = [bytes(r["session"]).decode("ascii", "replace") for r in rows]
        facts.pickle_key_opens = decryptor.key_opens(pickles, e2ee.pickle_key)


async def _wanted_privileges(conn: asyncpg.Connection, name: str) -> list[tuple[str, str]]:
    if name == "bridge":
        return [*doctor.NEEDED["bridge"], *doctor.EXCESS, doctor.MEGOLM_SESSIONS]
    if name == "synapse":
        return doctor.NEEDED["synapse"]
    relations = await conn.fetch(queries.load("doctor_relations"))
    tables = [r["name"] for r in relations if r["kind"] in ("r", "p")]
    sequences = [r["name"] for r in relations if r["kind"] == "S"]
    return doctor.archive_needs(tables, sequences)


def local_media_path(media_id: str) -> str:
    """Where Synapse keeps a local upload: local_content/ab/cd/<id minus its first four>."""
    return f"local_content/{media_id[0:2]}/{media_id[2:4]}/{media_id[4:]}"


def media_store_facts(path: Path, media_ids: list[str]) -> doctor.MediaStoreFacts:
    facts = doctor.MediaStoreFacts(str(path), path.exists(), path.is_dir(), listable=False)
    if not facts.is_dir:
        return facts
    try:
        facts.entries = {entry.name for entry in os.scandir(path)}
        facts.listable = os.access(path, os.R_OK | os.X_OK)
    except OSError:
        return facts
    for media_id in media_ids:
        relative = local_media_path(media_id)
        facts.sample[relative] = _readable(path / relative)
    return facts


def _readable(path: Path) -> str:
    try:
        with path.open("rb") as handle:
            handle.read(1)
    except FileNotFoundError:
        return "missing"
    except OSError:
        return "unreadable"
    return "ok"
