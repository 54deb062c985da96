"""`archiver-db doctor` checks over facts (pure): each broken setup fails with the right line."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from listener.core.networks import schema as bridge_schema
from listener.ops import doctor, doctor_facts
from listener.ops.doctor import Level

INSERT = doctor.Trigger(
    "archiver_db_message_insert", "public", "message", "O", "archiver_db", True, True
)


def bridge(**changes: object) -> doctor.DbFacts:
    facts = doctor.DbFacts(
        "bridge", version_num=150_000, version="15.2", user="archiver", clock_offset_s=0.0
    )
    facts.privileges = {key: True for key in doctor.NEEDED["bridge"]}
    facts.privileges |= {key: False for key in doctor.EXCESS}
    facts.columns = {table: set(needed) for table, (needed, _) in doctor.COLUMNS["bridge"].items()}
    facts.triggers = [INSERT]
    facts.schema = bridge_schema.SchemaFacts(
        {t: frozenset({"bridge_id"}) for t in bridge_schema.EXPECTED_TABLES}
        | {"whatsapp_version": frozenset({"version", "compat"})}
    )
    for name, value in changes.items():
        setattr(facts, name, value)
    return facts


def test_trigger__ok() -> None:
    result = doctor.trigger(bridge(), "archiver_db")
    assert result.level is Level.OK
    assert (
        result.line()
        == "OK    bridge trigger: archiver_db_message_insert enabled, channel archiver_db"
    )


@pytest.mark.parametrize(
    ("triggers", "expected"),
    [
        ([], "no archiver-db NOTIFY trigger (sweep only). Fix: as the bridge database owner"),
        (
            [dataclasses.replace(INSERT, enabled="D")],
            "archiver_db_message_insert on public.message is disabled (D). Fix: ALTER TABLE",
        ),
        (
            [dataclasses.replace(INSERT, enabled="R")],
            "is disabled (R)",
        ),
        (
            [dataclasses.replace(INSERT, channel="other")],
            "notifies channel 'other' but NOTIFY_CHANNEL is 'archiver_db'. "
            "Fix: set NOTIFY_CHANNEL=other",
        ),
        (
            [dataclasses.replace(INSERT, schema="old")],
            "archiver_db_message_insert is on old.message, not public.message",
        ),
        (
            [dataclasses.replace(INSERT, name="archiver_db_message_update", on_insert=False)],
            "no statement-level INSERT trigger on message",
        ),
    ],
)
def test_trigger__each_broken_setup_fails_with_its_fix(
    triggers: list[doctor.Trigger], expected: str
) -> None:
    result = doctor.trigger(bridge(triggers=triggers), "archiver_db")
    assert result.level is Level.FAIL
    assert expected in result.line()


def test_grants__missing_privilege_names_it_and_the_script() -> None:
    facts = bridge()
    facts.privileges[("portal", "SELECT")] = False
    result = doctor.grants(facts)
    assert result.line() == (
        "FAIL  bridge grants: archiver lacks SELECT on portal. Fix: psql -d <bridge db> "
        "-v target=bridge -v role=archiver -f sql/grants.sql  (as the database owner)"
    )


def test_grants__a_missing_table_is_named() -> None:
    facts = bridge()
    facts.privileges[("reaction", "SELECT")] = None
    result = doctor.grants(facts)
    assert result.level is Level.FAIL
    assert "missing tables: reaction" in result.line()


@pytest.mark.parametrize(
    ("superuser", "excess", "level", "text"),
    [
        (False, {}, Level.OK, "cannot read bridge secrets"),
        (True, {}, Level.WARN, "archiver is a superuser"),
        (False, {("user", "SELECT"): True}, Level.WARN, "also holds SELECT on user"),
        (False, {("message", "DELETE"): True}, Level.WARN, "also holds DELETE on message"),
    ],
)
def test_least_privilege(
    superuser: bool, excess: dict[tuple[str, str], bool], level: Level, text: str
) -> None:
    result = doctor.least_privilege(bridge(superuser=superuser), excess)
    assert result.level is level
    assert text in result.line()


def test_columns__a_rename_is_named_with_both_names() -> None:
    facts = bridge()
    facts.columns["message"] = (facts.columns["message"] - {"timestamp"}) | {"ts", "edit_count"}
    results = {r.check: r for r in doctor.columns(facts)}
    assert (
        results["bridge schema message"]
        .line()
        .startswith(
            "FAIL  bridge schema message: column timestamp missing (unknown columns: ts; renamed?)"
        )
    )
    assert results["bridge schema portal"].level is Level.OK


def test_columns__a_missing_table() -> None:
    facts = bridge()
    del facts.columns["ghost"]
    results = {r.check: r for r in doctor.columns(facts)}
    assert (
        results["bridge schema ghost"].line() == "FAIL  bridge schema ghost: table ghost not found"
    )


def test_connection__failure_names_the_setting() -> None:
    facts = doctor.DbFacts("synapse", error="cannot connect to postgresql://u@h:5432/s: refused")
    assert doctor.connection(facts).line() == (
        "FAIL  synapse connection: cannot connect: cannot connect to postgresql://u@h:5432/s: "
        "refused. Fix: check SYNAPSE_DB_URL (host, port, database, user, password) and pg_hba.conf"
    )


def test_connection__too_old_server() -> None:
    result = doctor.connection(bridge(version_num=90_600, version="9.6"))
    assert result.level is Level.FAIL


@pytest.mark.parametrize(
    ("offsets", "level"),
    [((0.1, -0.2, 0.0), Level.OK), ((3.0, 0.0, 0.0), Level.FAIL), ((0.0, -2.5, 0.0), Level.FAIL)],
)
def test_clock_skew(offsets: tuple[float, float, float], level: Level) -> None:
    dbs = [
        doctor.DbFacts(name, clock_offset_s=offset)
        for name, offset in zip(("bridge", "synapse", "archive"), offsets, strict=True)
    ]
    assert doctor.clock_skew(dbs, max_skew_s=2.0).level is level


def store(**changes: object) -> doctor.MediaStoreFacts:
    facts = doctor.MediaStoreFacts(
        "/srv/media", exists=True, is_dir=True, listable=True, entries={"local_content"}
    )
    for name, value in changes.items():
        setattr(facts, name, value)
    return facts


@pytest.mark.parametrize(
    ("facts", "has_media", "level", "text"),
    [
        (None, True, Level.SKIP, "MEDIA_STORE_PATH not set"),
        (store(), True, Level.OK, "/srv/media readable"),
        (store(exists=False, is_dir=False), True, Level.FAIL, "/srv/media does not exist"),
        (store(is_dir=False), True, Level.FAIL, "/srv/media is not a directory"),
        (store(listable=False), True, Level.FAIL, "/srv/media is not readable. Fix: give"),
        (store(entries=set()), True, Level.FAIL, "no local_content/ in /srv/media"),
        (store(entries=set()), False, Level.OK, "readable"),
        (store(sample={"local_content/ab/cd/x": "unreadable"}), True, Level.FAIL, "cannot read"),
        (store(sample={"local_content/ab/cd/x": "missing"}), True, Level.FAIL, "1 of 1 recent"),
        (store(sample={"local_content/ab/cd/x": "ok"}), True, Level.OK, "1 recent uploads"),
    ],
)
def test_media_store(
    facts: doctor.MediaStoreFacts | None, has_media: bool, level: Level, text: str
) -> None:
    result = doctor.media_store(facts, has_local_media=has_media)
    assert result.level is level
    assert text in result.line()


def test_media_store_facts__reads_the_synapse_layout(tmp_path: Path) -> None:
    media_id = "abcdefghijklmnopqrstuvwx"
    target = tmp_path / "local_content" / "ab" / "cd" / "efghijklmnopqrstuvwx"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"x")
    facts = doctor_facts.media_store_facts(tmp_path, [media_id, "zzzzzzzzzzzzzzzzzzzzzzzz"])
    assert facts.listable
    assert facts.sample == {
        "local_content/ab/cd/efghijklmnopqrstuvwx": "ok",
        "local_content/zz/zz/zzzzzzzzzzzzzzzzzzzz": "missing",
    }


def test_archive_needs__write_everything_but_the_ledger() -> None:
    needs = doctor.archive_needs(["messages", "archive_schema_migrations"], ["media_id_seq"])
    assert needs == [
        ("messages", "SELECT"),
        ("messages", "INSERT"),
        ("messages", "UPDATE"),
        ("archive_schema_migrations", "SELECT"),
        ("media_id_seq", "USAGE"),
    ]


def test_bridgev2__names_the_network_it_detected() -> None:
    result = doctor.bridgev2(bridge())
    assert (
        result.line() == "OK    bridge schema: bridgev2, network whatsapp (table whatsapp_version)"
    )


def test_bridgev2__unknown_network_passes_with_ids_kept_verbatim() -> None:
    facts = bridge_schema.SchemaFacts(
        {
            t: frozenset({"bridge_id"})
            for t in ("message", "portal", "ghost", "reaction", "user_login")
        }
    )
    result = doctor.bridgev2(bridge(schema=facts))
    assert result.level is Level.OK
    assert "network not known" in result.message
    assert "ids kept verbatim" in result.message


def test_evaluate__a_legacy_bridge_schema_fails_in_one_line_and_skips_the_bridge_checks() -> None:
    legacy = bridge_schema.SchemaFacts(
        {"puppet": frozenset({"username"}), "portal": frozenset({"jid", "receiver"})}
    )
    dbs = {"bridge": bridge(schema=legacy)}
    results = doctor_facts.evaluate(dbs, None, channel="archiver_db", max_clock_skew_s=2.0)
    failed = [r.line() for r in results if r.level is Level.FAIL]
    assert failed == [
        "FAIL  bridge schema: a legacy (pre-bridgev2) mautrix schema (table puppet, portal.jid); "
        "expected the bridgev2 tables message, portal, ghost, reaction, user_login, each with a "
        "bridge_id column. Fix: point WHATSAPP_DB_URL at a bridgev2 bridge's database; to "
        "convert a legacy one, start once a bridge release that still migrates legacy databases "
        "(for mautrix-whatsapp v0.11.0 to v0.12.4: mautrix/whatsapp legacymigrate.go)"
    ]
    checks = [r.check for r in results]
    assert "bridge trigger" not in checks
    assert "bridge grants" not in checks


def test_evaluate__skips_what_a_failed_connection_cannot_check() -> None:
    dbs = {
        "bridge": bridge(),
        "synapse": doctor.DbFacts("synapse", error="refused"),
        "archive": doctor.DbFacts("archive", version_num=150_000, version="15", user="a"),
    }
    results = doctor_facts.evaluate(dbs, None, channel="archiver_db", max_clock_skew_s=2.0)
    levels = {r.check: r.level for r in results}
    assert levels["synapse connection"] is Level.FAIL
    assert levels["synapse checks"] is Level.SKIP
    assert levels["bridge trigger"] is Level.OK
    assert levels["archive schema"] is Level.OK
    assert not doctor.passed(results)
    assert doctor.summary(results) == f"1 of {len(results)} checks failed"


def _archive_with(decryption: dict[str, tuple[int, int]]) -> doctor.DbFacts:
    return doctor.DbFacts("archive", decryption=decryption)


@pytest.mark.parametrize(
    ("grant", "opens", "level", "text"),
    [
        (True, True, Level.OK, "decrypting (3 decrypted, 1 no_session)"),
        (True, None, Level.OK, "decrypting (3 decrypted, 1 no_session)"),
        (
            True,
            False,
            Level.FAIL,
            "BRIDGE_PICKLE_KEY does not open the bridge's Megolm sessions. Fix: set it to the "
            "bridge config's encryption.pickle_key",
        ),
        (False, None, Level.FAIL, "-v e2ee=on -f sql/grants.sql"),
        (None, None, Level.FAIL, "no crypto_megolm_inbound_session"),
    ],
)
def test_e2ee__with_the_key_the_grant_and_the_key_must_work(
    grant: bool | None, opens: bool | None, level: Level, text: str
) -> None:
    facts = bridge(pickle_key_opens=opens)
    facts.privileges[doctor.MEGOLM_SESSIONS] = grant
    archive = _archive_with({"decrypted": (3, 1), "no_session": (1, 1)})

    result = doctor.e2ee(facts, archive, key_set=True)

    assert result.level is level
    assert text in result.line()


def test_e2ee__without_the_key_ciphertext_is_counted_and_the_setting_named() -> None:
    result = doctor.e2ee(bridge(), _archive_with({"": (12, 2)}), key_set=False)
    assert result.level is Level.WARN
    assert "12 messages in 2 encrypted rooms are archived as ciphertext" in result.line()
    assert "BRIDGE_PICKLE_KEY" in result.line()
    assert doctor.e2ee(bridge(), _archive_with({}), key_set=False).level is Level.OK


def test_grants__the_megolm_sessions_are_not_needed_without_e2ee() -> None:
    facts = bridge()
    facts.privileges[doctor.MEGOLM_SESSIONS] = None
    assert doctor.grants(facts).level is Level.OK
