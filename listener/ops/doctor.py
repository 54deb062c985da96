"""``archiver-db doctor``: small pure checks over facts fetched by :mod:`listener.ops.doctor_facts`.

Each check gives one line: OK, or what is wrong and the one-line fix. WARN lines advise (they do
not fail the run); FAIL lines do; SKIP lines say a check could not run (its cause failed).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

from listener.core.networks import schema as bridge_schema

MIN_VERSION_NUM = 100_000  # statement triggers with transition tables (sql/triggers.sql)
TRIGGER_TABLES = frozenset({"message", "reaction"})
ENABLED_STATES = frozenset({"O", "A"})  # origin/local and always; 'D' off, 'R' replica only
DB_SETTING = {"bridge": "WHATSAPP_DB_URL", "synapse": "SYNAPSE_DB_URL", "archive": "ARCHIVE_DB_URL"}

# What the archiver reads and writes: sql/grants.sql grants exactly this.
BRIDGE_TABLES = ("message", "portal", "ghost", "reaction")
SYNAPSE_TABLES = (
    "events",
    "event_json",
    "event_relations",
    "redactions",
    "rejections",
    "rooms",
    "room_memberships",
    "current_state_events",
    "room_stats_state",
    "local_media_repository",
    "local_media_repository_thumbnails",
    "remote_media_cache",
    "remote_media_cache_thumbnails",
)
ARCHIVE_READ_ONLY = frozenset({"archive_schema_migrations"})
NEEDED: dict[str, list[tuple[str, str]]] = {
    "bridge": [(table, "SELECT") for table in BRIDGE_TABLES],
    "synapse": [(table, "SELECT") for table in SYNAPSE_TABLES],
}


def archive_needs(tables: list[str], sequences: list[str]) -> list[tuple[str, str]]:
    """Write access to every archive table (the migrations ledger is read only), and USAGE on
    the sequences behind their ids."""
    needs: list[tuple[str, str]] = []
    for table in tables:
        privileges = ("SELECT",) if table in ARCHIVE_READ_ONLY else ("SELECT", "INSERT", "UPDATE")
        needs.extend((table, priv) for priv in privileges)
    return needs + [(sequence, "USAGE") for sequence in sequences]


# Privileges the bridge role should NOT have: secrets and writes. The crypto store's account and
# Olm sessions could impersonate the bridge's device (only the Megolm sessions are needed).
EXCESS: list[tuple[str, str]] = [
    ("user", "SELECT"),
    ("user_login", "SELECT"),
    ("kv_store", "SELECT"),
    ("crypto_account", "SELECT"),
    ("crypto_olm_session", "SELECT"),
    ("message", "INSERT"),
    ("message", "UPDATE"),
    ("message", "DELETE"),
]


def _names(text: str) -> frozenset[str]:
    return frozenset(text.split())


# The columns our queries name (listener/db/sql/*.sql), and every column the schema version we
# know has, so a rename shows as "missing x, new y".
COLUMNS: dict[str, dict[str, tuple[frozenset[str], frozenset[str]]]] = {
    "bridge": {
        "message": (
            _names(
                "rowid bridge_id id part_id mxid room_id room_receiver sender_id sender_mxid "
                "timestamp thread_root_id reply_to_id reply_to_part_id metadata"
            ),
            _names("edit_count double_puppeted send_txn_id"),
        ),
        "portal": (
            _names("bridge_id id receiver mxid name room_type"),
            _names(
                "parent_id parent_receiver relay_bridge_id relay_login_id other_user_id "
                "topic avatar_id avatar_hash avatar_mxc name_set avatar_set topic_set "
                "in_space name_is_custom message_request disappear_type disappear_timer "
                "cap_state metadata"
            ),
        ),
        "ghost": (
            _names("bridge_id id name"),
            _names(
                "avatar_id avatar_hash avatar_mxc name_set avatar_set contact_info_set "
                "is_bot identifiers extra_profile metadata"
            ),
        ),
    },
    "synapse": {
        "events": (
            _names(
                "event_id room_id type sender origin_server_ts received_ts stream_ordering "
                "outlier rejection_reason"
            ),
            frozenset(),
        ),
        "event_json": (_names("event_id room_id json internal_metadata"), frozenset()),
        "room_memberships": (
            _names("room_id user_id display_name event_stream_ordering"),
            frozenset(),
        ),
    },
}


class Level(enum.Enum):
    OK = "OK"
    WARN = "WARN"
    FAIL = "FAIL"
    SKIP = "SKIP"


@dataclass(frozen=True, slots=True)
class Result:
    check: str
    level: Level
    message: str
    fix: str | None = None

    def line(self) -> str:
        text = f"{self.level.value:<5} {self.check}: {self.message}"
        return f"{text}. Fix: {self.fix}" if self.fix else text


@dataclass(frozen=True, slots=True)
class Trigger:
    name: str
    schema: str
    table: str
    enabled: str
    channel: str
    on_insert: bool
    per_statement: bool


@dataclass
class DbFacts:
    name: str
    error: str | None = None
    version_num: int = 0
    version: str = ""
    user: str = ""
    superuser: bool = False
    clock_offset_s: float | None = None
    privileges: dict[tuple[str, str], bool | None] = field(default_factory=dict)
    columns: dict[str, set[str]] = field(default_factory=dict)
    triggers: list[Trigger] = field(default_factory=list)
    pending_migrations: list[str] = field(default_factory=list)
    media_ids: list[str] | None = None
    schema: bridge_schema.SchemaFacts | None = None  # the bridge database's catalog
    # e2ee: bridge: whether BRIDGE_PICKLE_KEY opens its newest sessions (None: none to try, or
    # no key); archive: messages of encrypted rooms by decryption status ('' = ciphertext,
    # archived without the key) as (messages, rooms).
    pickle_key_opens: bool | None = None
    decryption: dict[str, tuple[int, int]] = field(default_factory=dict)


@dataclass
class MediaStoreFacts:
    path: str
    exists: bool
    is_dir: bool
    listable: bool
    entries: set[str] = field(default_factory=set)
    # relative path -> "ok" | "missing" | "unreadable"
    sample: dict[str, str] = field(default_factory=dict)


def connection(db: DbFacts) -> Result:
    check = f"{db.name} connection"
    if db.error is not None:
        return Result(
            check,
            Level.FAIL,
            f"cannot connect: {db.error}",
            f"check {DB_SETTING[db.name]} (host, port, database, user, password) and pg_hba.conf",
        )
    if db.version_num < MIN_VERSION_NUM:
        return Result(
            check, Level.FAIL, f"PostgreSQL {db.version} is too old", "upgrade to PostgreSQL 10+"
        )
    return Result(check, Level.OK, f"connected as {db.user} to PostgreSQL {db.version}")


def bridgev2(db: DbFacts) -> Result:
    """Is the bridge database a mautrix bridgev2 one (and of which network)? A legacy schema
    fails here in one line, and the other bridge checks are skipped (they would only repeat it)."""
    check = "bridge schema"
    if db.schema is None:
        return Result(check, Level.SKIP, "the catalog was not read")
    verdict = bridge_schema.check(db.schema)
    if not verdict.bridgev2:
        return Result(
            check,
            Level.FAIL,
            verdict.problem or "not bridgev2",
            f"point {DB_SETTING['bridge']} at a bridgev2 bridge's database; to convert a legacy "
            "one, start once a bridge release that still migrates legacy databases (for "
            "mautrix-whatsapp v0.11.0 to v0.12.4: mautrix/whatsapp legacymigrate.go)",
        )
    if verdict.network is None:
        return Result(
            check, Level.OK, f"bridgev2, network not known ({verdict.evidence}): ids kept verbatim"
        )
    return Result(check, Level.OK, f"bridgev2, network {verdict.network} ({verdict.evidence})")


def trigger(db: DbFacts, channel: str) -> Result:
    check = "bridge trigger"
    install = "as the bridge database owner: psql -d <bridge db> -f sql/triggers.sql"
    if not db.triggers:
        return Result(check, Level.FAIL, "no archiver-db NOTIFY trigger (sweep only)", install)
    for t in db.triggers:
        where = f"{t.schema}.{t.table}"
        if t.schema != "public" or t.table not in TRIGGER_TABLES:
            return Result(
                check,
                Level.FAIL,
                f"{t.name} is on {where}, not public.message",
                f"remove it (DROP TRIGGER {t.name} ON {where}), then {install}",
            )
        if t.enabled not in ENABLED_STATES:
            return Result(
                check,
                Level.FAIL,
                f"{t.name} on {where} is disabled ({t.enabled})",
                f"ALTER TABLE {where} ENABLE TRIGGER {t.name}  (as the bridge database owner)",
            )
        if t.channel != channel:
            return Result(
                check,
                Level.FAIL,
                f"{t.name} notifies channel {t.channel!r} but NOTIFY_CHANNEL is {channel!r}",
                f"set NOTIFY_CHANNEL={t.channel}, or reinstall: psql -d <bridge db> "
                f"-v channel={channel} -f sql/triggers.sql",
            )
    inserts = [t for t in db.triggers if t.table == "message" and t.on_insert and t.per_statement]
    if not inserts:
        return Result(check, Level.FAIL, "no statement-level INSERT trigger on message", install)
    names = ", ".join(t.name for t in db.triggers)
    return Result(check, Level.OK, f"{names} enabled, channel {channel}")


def grants(db: DbFacts) -> Result:
    check = f"{db.name} grants"
    needed = {
        key: ok
        for key, ok in db.privileges.items()
        if key not in EXCESS and key != MEGOLM_SESSIONS  # e2ee() checks that one
    }
    absent = sorted({rel for (rel, _), ok in needed.items() if ok is None})
    lacking = [f"{priv} on {rel}" for (rel, priv), ok in needed.items() if ok is False]
    script = (
        f"psql -d <{db.name} db> -v target={db.name} -v role={db.user or '<role>'} "
        "-f sql/grants.sql  (as the database owner)"
    )
    if absent:
        hint = (
            "run `archiver-db migrate`" if db.name == "archive" else "is this the right database?"
        )
        return Result(check, Level.FAIL, f"missing tables: {', '.join(absent)}", hint)
    if lacking:
        return Result(check, Level.FAIL, f"{db.user} lacks {', '.join(lacking)}", script)
    return Result(check, Level.OK, f"{db.user} holds all {len(needed)} privileges needed")


MEGOLM_SESSIONS = ("crypto_megolm_inbound_session", "SELECT")


def e2ee(bridge: DbFacts, archive: DbFacts | None, *, key_set: bool) -> Result:
    """Encrypted portals: archived as ciphertext without BRIDGE_PICKLE_KEY; with it, the grant
    and the key must work. Never names the key's value."""
    check = "encrypted rooms"
    counts = archive.decryption if archive is not None else {}
    if not key_set:
        messages, rooms = counts.get("", (0, 0))
        if messages:
            return Result(
                check,
                Level.WARN,
                f"{messages} messages in {rooms} encrypted rooms are archived as ciphertext",
                "set BRIDGE_PICKLE_KEY to the bridge config's encryption.pickle_key and grant "
                "-v e2ee=on (sql/grants.sql) to decrypt them",
            )
        return Result(check, Level.OK, "none archived as ciphertext (BRIDGE_PICKLE_KEY not set)")
    grant = bridge.privileges.get(MEGOLM_SESSIONS)
    if grant is None:
        return Result(
            check,
            Level.FAIL,
            "the bridge database has no crypto_megolm_inbound_session",
            "is end-to-bridge encryption (encryption.allow) on in the bridge config?",
        )
    if grant is False:
        return Result(
            check,
            Level.FAIL,
            f"{bridge.user} lacks SELECT on crypto_megolm_inbound_session",
            f"psql -d <bridge db> -v target=bridge -v role={bridge.user or '<role>'} "
            "-v e2ee=on -f sql/grants.sql  (as the database owner)",
        )
    if bridge.pickle_key_opens is False:
        return Result(
            check,
            Level.FAIL,
            "BRIDGE_PICKLE_KEY does not open the bridge's Megolm sessions",
            "set it to the bridge config's encryption.pickle_key",
        )
    detail = ", ".join(f"{n} {status}" for status, (n, _r) in sorted(counts.items()) if status)
    return Result(check, Level.OK, f"decrypting ({detail or 'no encrypted messages yet'})")


def least_privilege(db: DbFacts, excess: Mapping[tuple[str, str], bool | None]) -> Result:
    check = f"{db.name} least privilege"
    fix = "run the archiver as the role sql/grants.sql creates"
    if db.superuser:
        return Result(check, Level.WARN, f"{db.user} is a superuser", fix)
    held = [f"{priv} on {rel}" for (rel, priv), ok in excess.items() if ok]
    if held:
        return Result(check, Level.WARN, f"{db.user} also holds {', '.join(held)}", fix)
    return Result(check, Level.OK, "cannot read bridge secrets or write the bridge")


def columns(db: DbFacts) -> list[Result]:
    results = []
    for table, (needed, known) in COLUMNS.get(db.name, {}).items():
        check = f"{db.name} schema {table}"
        actual = db.columns.get(table)
        if actual is None:
            results.append(Result(check, Level.FAIL, f"table {table} not found", None))
            continue
        missing = sorted(needed - actual)
        if not missing:
            results.append(Result(check, Level.OK, f"all {len(needed)} columns we query"))
            continue
        new = sorted(actual - needed - known)
        renamed = f" (unknown columns: {', '.join(new)}; renamed?)" if new else ""
        results.append(
            Result(
                check,
                Level.FAIL,
                f"column{'s' if len(missing) > 1 else ''} {', '.join(missing)} missing{renamed}",
                f"the {db.name} schema changed (an upgrade?): use an archiver-db release that "
                "supports it; until then these rows cannot be read",
            )
        )
    return results


def migrated(db: DbFacts) -> Result:
    if db.pending_migrations:
        pending = ", ".join(db.pending_migrations)
        return Result(
            "archive schema",
            Level.FAIL,
            f"not migrated (pending: {pending})",
            "archiver-db migrate --db-url <archive owner URL>",
        )
    return Result("archive schema", Level.OK, "migrated")


def clock_skew(dbs: list[DbFacts], *, max_skew_s: float) -> Result:
    offsets = {db.name: db.clock_offset_s for db in dbs if db.clock_offset_s is not None}
    if not offsets:
        return Result("clock skew", Level.SKIP, "no database reachable")
    values = [0.0, *offsets.values()]  # this host is the reference
    skew = max(values) - min(values)
    detail = ", ".join(f"{name} {offset:+.2f} s" for name, offset in offsets.items())
    if skew > max_skew_s:
        return Result(
            "clock skew",
            Level.FAIL,
            f"clocks differ by {skew:.1f} s (vs this host: {detail}); latency and lag lie",
            "synchronise every host with NTP (chrony or systemd-timesyncd)",
        )
    return Result("clock skew", Level.OK, f"within {max_skew_s:g} s ({detail})")


def media_store(store: MediaStoreFacts | None, *, has_local_media: bool | None) -> Result:
    check = "media store"
    if store is None:
        return Result(check, Level.SKIP, "MEDIA_STORE_PATH not set (media are not archived)")
    where = store.path
    point = "set MEDIA_STORE_PATH to Synapse's media_store_path (homeserver.yaml)"
    if not store.exists or not store.is_dir:
        what = "is not a directory" if store.exists else "does not exist"
        return Result(check, Level.FAIL, f"{where} {what}", point)
    grant = f"give the archiver's user read access (e.g. setfacl -R -m u:archiver:rX {where})"
    if not store.listable:
        return Result(check, Level.FAIL, f"{where} is not readable", grant)
    if has_local_media and "local_content" not in store.entries:
        return Result(check, Level.FAIL, f"no local_content/ in {where}", point)
    unreadable = sorted(p for p, state in store.sample.items() if state == "unreadable")
    missing = sorted(p for p, state in store.sample.items() if state == "missing")
    if unreadable:
        return Result(check, Level.FAIL, f"cannot read {unreadable[0]} under {where}", grant)
    if missing:
        return Result(
            check,
            Level.FAIL,
            f"{len(missing)} of {len(store.sample)} recent uploads missing (e.g. {missing[0]})",
            f"{point}; with a storage provider (S3) files are not local",
        )
    checked = f", {len(store.sample)} recent uploads readable" if store.sample else ""
    return Result(check, Level.OK, f"{where} readable{checked}")


def passed(results: list[Result]) -> bool:
    return all(r.level is not Level.FAIL for r in results)


def summary(results: list[Result]) -> str:
    failed = sum(r.level is Level.FAIL for r in results)
    warned = sum(r.level is Level.WARN for r in results)
    if failed:
        return f"{failed} of {len(results)} checks failed"
    return f"all {len(results)} checks passed" + (f" ({warned} warnings)" if warned else "")
