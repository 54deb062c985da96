"""Is a bridge database a mautrix bridgev2 one, and of which network? Pure: the caller reads the
catalog (table and column names, visible without any grant) and ``database_owner`` if it may.

bridgev2's schema (mautrix/go ``bridgev2/database/upgrades/00-latest.sql``) keys every table by
``bridge_id``. The bridges before it (the "legacy" ones: mautrix-whatsapp ≤ v0.10, e.g. its
``database/upgrades/00-latest-revision.sql`` before commit ea2d8ba) had ``puppet`` instead of
``ghost``, and ``portal``/``message`` keyed by network columns (``jid``, ``chat_jid``) with no
``bridge_id``; a bridgev2 release migrates them on first start (mxmain ``legacymigrate.go``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from listener.core.networks import catalog

# The bridgev2 tables: the archiver reads the first four; user_login is bridgev2's too (it is
# what a legacy schema lacks, together with bridge_id).
EXPECTED_TABLES = ("message", "portal", "ghost", "reaction", "user_login")
KEY_COLUMN = "bridge_id"
OWNER_TABLE = "database_owner"  # go.mau.fi/util dbutil/upgrades.go: (key 0, owner)
MEGABRIDGE_PREFIX = "megabridge/"
LEGACY_TABLES = ("puppet",)


@dataclass(frozen=True, slots=True)
class SchemaFacts:
    """What the catalog says: every table (and view) of the schema with its columns, and the
    ``database_owner`` row when it could be read."""

    columns: Mapping[str, frozenset[str]]
    owner: str | None = None


@dataclass(frozen=True, slots=True)
class Verdict:
    bridgev2: bool
    network: str | None  # a catalog profile name; None when it cannot be told
    evidence: str  # how the network was told, or why not
    problem: str | None = None  # one line when not bridgev2

    def describe(self) -> str:
        network = self.network or "not known"
        return self.problem or f"bridgev2, network {network} ({self.evidence})"


def check(facts: SchemaFacts) -> Verdict:
    """bridgev2 (and which network), or the one line saying what was expected instead."""
    missing = [t for t in EXPECTED_TABLES if t not in facts.columns]
    unkeyed = [t for t in EXPECTED_TABLES if KEY_COLUMN not in facts.columns.get(t, {KEY_COLUMN})]
    if not missing and not unkeyed:
        network, evidence = detect_network(facts)
        return Verdict(True, network, evidence)
    legacy = _legacy_signs(facts)
    if legacy:
        what = f"a legacy (pre-bridgev2) mautrix schema ({', '.join(legacy)})"
    else:
        gaps = [f"no table {', '.join(missing)}"] if missing else []
        gaps += [f"no {KEY_COLUMN} in {', '.join(unkeyed)}"] if unkeyed else []
        what = f"not a mautrix bridgev2 schema ({'; '.join(gaps)})"
    network, evidence = _legacy_network(facts)
    problem = (
        f"{what}; expected the bridgev2 tables {', '.join(EXPECTED_TABLES)}, each with a "
        f"{KEY_COLUMN} column"
    )
    return Verdict(False, network, evidence, problem)


def detect_network(facts: SchemaFacts) -> tuple[str | None, str]:
    """The network from ``database_owner`` (exact), else from the tables only one network's
    connector creates; None when neither tells (a bridge we have no profile for)."""
    if facts.owner is not None:
        for profile in catalog.PROFILES.values():
            if facts.owner in profile.db_owners:
                return profile.name, f"database_owner {facts.owner!r}"
    by_tables = [
        (profile.name, table)
        for profile in catalog.PROFILES.values()
        for table in profile.marker_tables
        if table in facts.columns
    ]
    names = sorted({name for name, _ in by_tables})
    if len(names) == 1:
        tables = ", ".join(sorted(t for _, t in by_tables))
        return names[0], f"table {tables}"
    if names:
        return None, f"tables of several networks ({', '.join(names)})"
    owner = f"database_owner {facts.owner!r}, " if facts.owner is not None else ""
    return None, f"{owner}no table a known network's connector creates"


def _legacy_network(facts: SchemaFacts) -> tuple[str | None, str]:
    if facts.owner is not None:
        for profile in catalog.PROFILES.values():
            if facts.owner in profile.legacy_owners:
                return profile.name, f"database_owner {facts.owner!r}"
    return None, "not a bridgev2 database"


def _legacy_signs(facts: SchemaFacts) -> list[str]:
    signs = []
    owner = facts.owner
    if owner is not None and not owner.startswith(MEGABRIDGE_PREFIX):
        signs.append(f"database_owner {owner!r}")
    signs.extend(f"table {t}" for t in LEGACY_TABLES if t in facts.columns)
    for table, column in (("portal", "jid"), ("message", "chat_jid")):
        if column in facts.columns.get(table, frozenset()):
            signs.append(f"{table}.{column}")
    return signs
