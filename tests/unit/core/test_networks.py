"""listener.core.networks: per-network id rules, ghost Matrix IDs and the bridgev2 schema check.

The ids below are built the way each bridge builds them (the upstream file is named per block).
"""

from __future__ import annotations

import pytest

from listener.core.networks import catalog, ghosts, schema
from listener.core.networks.profile import ChatKind, NetworkProfile, PartInfo

WA = catalog.get("whatsapp")
SIGNAL = catalog.get("signal")
META = catalog.get("meta")
GM = catalog.get("gmessages")
SLACK = catalog.get("slack")
GENERIC = catalog.get("generic")

ACI = "0b1c8f9e-2d3a-4b5c-8d7e-6f5a4b3c2d1e"
PNI = "5e6f7a8b-9c0d-4e1f-8a2b-3c4d5e6f7a8b"
GROUP_ID = "q7nJdF0xbq9nq1T6GAMa/5dL7cj8GEEfAnRmSq3Y8Yk="  # base64 of 32 bytes: 44 characters


# -- message, chat and sender ids --------------------------------------------------------------


@pytest.mark.parametrize(
    ("profile", "message_id", "chat_id", "sender_id", "extras"),
    [
        # mautrix/whatsapp pkg/waid/id.go MakePortalID, MakeUserID, MakeMessageID
        pytest.param(
            WA,
            "120363012345678901@g.us:4915112345678@s.whatsapp.net:3EB0A1B2C3D4E5F6A7B8",
            "120363012345678901@g.us",
            "4915112345678",
            {
                "chat_jid": "120363012345678901@g.us",
                "chat_server": "g.us",
                "sender_jid": "4915112345678@s.whatsapp.net",
                "message_chat_jid": "120363012345678901@g.us",
                "message_sender_jid": "4915112345678@s.whatsapp.net",
                "message_wa_id": "3EB0A1B2C3D4E5F6A7B8",
            },
            id="whatsapp-group-phone-sender",
        ),
        pytest.param(
            WA,
            "123456789012345@lid:123456789012345@lid:3A0F5C2B9E8D7A6B",
            "123456789012345@lid",
            "lid-123456789012345",
            {
                "chat_jid": "123456789012345@lid",
                "chat_server": "lid",
                "sender_jid": "123456789012345@lid",
                "message_chat_jid": "123456789012345@lid",
                "message_sender_jid": "123456789012345@lid",
                "message_wa_id": "3A0F5C2B9E8D7A6B",
            },
            id="whatsapp-lid-dm",
        ),
        pytest.param(
            WA,
            "fake:120363012345678901@g.us:4915112345678@s.whatsapp.net:disappearing",
            "120363012345678901@g.us",
            "bot-867051314767696",
            {
                "chat_jid": "120363012345678901@g.us",
                "chat_server": "g.us",
                "sender_jid": "867051314767696@bot",
                "message_fake": "true",
            },
            id="whatsapp-fake-id-bot-sender",
        ),
        # mautrix/signal pkg/signalid/ids.go MakeGroupPortalID, MakeUserID, MakeMessageID
        pytest.param(
            SIGNAL,
            f"{ACI}|1700000000123",
            GROUP_ID,
            ACI,
            {
                "chat_group_id": GROUP_ID,
                "sender_aci": ACI,
                "message_sender_aci": ACI,
                "message_timestamp_ms": "1700000000123",
            },
            id="signal-group",
        ),
        pytest.param(
            SIGNAL,
            f"{ACI}|1700000000456",
            f"PNI:{PNI}",
            f"pni_{PNI}",
            {
                "chat_pni": PNI,
                "sender_pni": PNI,
                "message_sender_aci": ACI,
                "message_timestamp_ms": "1700000000456",
            },
            id="signal-pni-dm",
        ),
        # mautrix/meta pkg/metaid/ids.go MakeFBPortalID, MakeUserID, MakeFBMessageID
        pytest.param(
            META,
            "fb:mid.$cAABa9Xyz0123AbCdEfGhIjKlMnOp",
            "7894561230123456",
            "100012345678901",
            {
                "chat_thread_id": "7894561230123456",
                "sender_user_id": "100012345678901",
                "message_source": "fb",
                "message_mid": "mid.$cAABa9Xyz0123AbCdEfGhIjKlMnOp",
            },
            id="meta-messenger",
        ),
        pytest.param(
            META,
            "wa:100012345678901@msgr:100098765432109@msgr:3EB0C0FFEE",
            "100012345678901",
            "100098765432109",
            {
                "chat_thread_id": "100012345678901",
                "sender_user_id": "100098765432109",
                "message_source": "wa",
                "message_chat_jid": "100012345678901@msgr",
                "message_sender_jid": "100098765432109@msgr",
                "message_wa_id": "3EB0C0FFEE",
            },
            id="meta-e2ee-over-whatsapp-protocol",
        ),
        # mautrix/gmessages pkg/connector/id.go makeAnyID
        pytest.param(
            GM,
            "1.4711",
            "1.42",
            "1.7",
            {
                "chat_login_prefix": "1",
                "chat_conversation_id": "42",
                "sender_participant_id": "7",
                "message_gm_id": "4711",
            },
            id="gmessages-sequential-prefix",
        ),
        pytest.param(
            GM,
            "3f2a9c0d1e2b4a5c.4711",
            "3f2a9c0d1e2b4a5c.42",
            "3f2a9c0d1e2b4a5c.7",
            {
                "chat_login_prefix": "3f2a9c0d1e2b4a5c",
                "chat_conversation_id": "42",
                "sender_participant_id": "7",
                "message_gm_id": "4711",
            },
            id="gmessages-deterministic-prefix",
        ),
        # mautrix/slack pkg/slackid/id.go MakePortalID, MakeUserID, MakeMessageID
        pytest.param(
            SLACK,
            "T0123ABCD-C0456EFGH-1700000000.123456",
            "T0123ABCD-C0456EFGH",
            "t0123abcd-u0789ijkl",
            {
                "chat_team_id": "T0123ABCD",
                "chat_channel_id": "C0456EFGH",
                "sender_team_id": "T0123ABCD",
                "sender_user_id": "U0789IJKL",
                "message_team_id": "T0123ABCD",
                "message_channel_id": "C0456EFGH",
                "message_ts": "1700000000.123456",
            },
            id="slack-channel",
        ),
        pytest.param(
            GENERIC,
            "1712345678901234567",
            "chat:with:colons",
            "user-1",
            {},
            id="generic-keeps-everything-verbatim",
        ),
    ],
)
def test_describe__keeps_ids_verbatim_and_parses_the_network_parts(
    profile: NetworkProfile,
    message_id: str,
    chat_id: str,
    sender_id: str,
    extras: dict[str, str],
) -> None:
    ids = profile.describe(message_id=message_id, chat_id=chat_id, sender_id=sender_id)
    assert (ids.network_message_id, ids.network_chat_id, ids.network_sender_id) == (
        message_id,
        chat_id,
        sender_id,
    )
    assert ids.extras == extras


@pytest.mark.parametrize(
    ("profile", "message_id", "chat_id", "sender_id"),
    [
        pytest.param(WA, "3EB0A1B2", "not-a-jid", "", id="whatsapp"),
        pytest.param(SIGNAL, f"{ACI}|soon", "short", "pni_nope", id="signal"),
        pytest.param(SIGNAL, f"{ACI}|1|2", "x" * 44, "nope", id="signal-44-not-base64"),
        pytest.param(META, "fb:", "thread-7", "-100", id="meta"),
        pytest.param(GM, "4711", ".42", "1.", id="gmessages"),
        pytest.param(SLACK, "T1-C2", "T1-C2-X3", "t1", id="slack"),
    ],
)
def test_describe__ids_not_in_the_network_format_stay_verbatim_without_extras(
    profile: NetworkProfile, message_id: str, chat_id: str, sender_id: str
) -> None:
    ids = profile.describe(message_id=message_id, chat_id=chat_id, sender_id=sender_id)
    assert ids.extras == {}
    assert ids.network_message_id == message_id
    assert ids.network_chat_id == chat_id
    assert ids.network_sender_id == (sender_id or None)


def test_describe__a_receiver_names_the_login_the_portal_belongs_to() -> None:
    # A Meta group seen by two logins with split_portals: same portal.id, other receiver.
    ids = META.describe(
        message_id="fb:mid.$x", chat_id="7894561230123456", sender_id="", receiver="100012345"
    )
    assert ids.extras["chat_receiver"] == "100012345"
    assert ids.network_sender_id is None


# -- parts ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("profile", "part_id", "expected"),
    [
        pytest.param(WA, "", PartInfo(index=0), id="whatsapp-only-part"),
        # mautrix/signal pkg/signalid/ids.go MakeMessagePartID
        pytest.param(SIGNAL, "", PartInfo(index=0), id="signal-first"),
        pytest.param(SIGNAL, "2", PartInfo(index=2), id="signal-third"),
        pytest.param(SIGNAL, "²", PartInfo(), id="signal-not-ascii"),
        # mautrix/meta pkg/metaid/ids.go, pkg/msgconv/from-meta.go, igconv/from-instagram.go
        pytest.param(META, "3", PartInfo(index=3), id="meta-index"),
        pytest.param(
            META, "blob_attachment_1", PartInfo(index=1, kind="blob_attachment"), id="meta-blob"
        ),
        pytest.param(META, "image-2", PartInfo(index=2, kind="image"), id="instagram-media"),
        pytest.param(META, "xma-text-body", PartInfo(kind="xma-text-body"), id="instagram-xma"),
        # mautrix/gmessages pkg/connector/handlegmessages.go: the media's action message ID
        pytest.param(GM, "", PartInfo(index=0), id="gmessages-first"),
        pytest.param(GM, "tmp_123456789", PartInfo(native_id="tmp_123456789"), id="gmessages"),
        # mautrix/slack pkg/slackid/id.go MakePartID
        pytest.param(
            SLACK,
            "file-1-F0789IJKL",
            PartInfo(index=1, kind="file", native_id="F0789IJKL"),
            id="slack-file",
        ),
        pytest.param(
            SLACK,
            "attachment-2-1",
            PartInfo(index=2, kind="attachment", native_id="1"),
            id="slack-image-block",
        ),
        pytest.param(GENERIC, "whatever", PartInfo(native_id="whatever"), id="generic"),
    ],
)
def test_part__reads_the_part_id(profile: NetworkProfile, part_id: str, expected: PartInfo) -> None:
    assert profile.part(part_id) == expected


@pytest.mark.parametrize(
    ("name", "multi_part"),
    [("whatsapp", False), ("signal", True), ("meta", True), ("gmessages", True), ("slack", True)],
)
def test_multi_part__only_whatsapp_sends_one_part_per_message(name: str, multi_part: bool) -> None:
    assert catalog.get(name).multi_part is multi_part


def test_whatsapp_columns__are_filled_for_whatsapp_only() -> None:
    filling = [name for name, p in catalog.PROFILES.items() if p.fills_whatsapp_columns]
    assert filling == ["whatsapp"]


# -- chat kinds ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("room_type", "kind", "direct"),
    [
        ("", ChatKind.GROUP, False),
        ("dm", ChatKind.DM, True),
        ("group_dm", ChatKind.GROUP_DM, True),
        ("space", ChatKind.SPACE, False),
        (None, ChatKind.UNKNOWN, False),
        ("channel", ChatKind.UNKNOWN, False),
    ],
)
def test_chat_kind__from_portal_room_type(
    room_type: str | None, kind: ChatKind, direct: bool
) -> None:
    assert SLACK.chat_kind(room_type) is kind
    assert kind.is_direct is direct


# -- ghost Matrix IDs ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ghost_id", "localpart"),
    [
        ("4915112345678", "4915112345678"),
        ("lid-123456789012345", "lid-123456789012345"),
        (f"pni_{PNI}", f"pni__{PNI}"),
        ("t0123abcd-u0789ijkl", "t0123abcd-u0789ijkl"),
        ("1.42", "1.42"),
        # mautrix/go id/userid.go's doc example says "_alph=40_bet=5f50up", but its code
        # escapes "_" as "__" (shouldEscape); the code is what names the ghosts.
        ("Alph@Bet_50up", "_alph=40_bet__50up"),
        ("ü", "=c3=bc"),
    ],
)
def test_localpart_encoding__round_trips_like_mautrix(ghost_id: str, localpart: str) -> None:
    assert ghosts.encode_localpart(ghost_id) == localpart
    assert ghosts.decode_localpart(localpart) == ghost_id


def test_decode_localpart__reads_an_underscore_written_as_hex_too() -> None:
    assert ghosts.decode_localpart("_alph=40_bet=5f50up") == "Alph@Bet_50up"


@pytest.mark.parametrize("localpart", ["_", "_1", "=zz", "=c3", "UPPER", "a b", "=ff"])
def test_decode_localpart__refuses_what_mautrix_never_writes(localpart: str) -> None:
    assert ghosts.decode_localpart(localpart) is None


@pytest.mark.parametrize(
    ("profile", "mxid", "configured", "ghost_id"),
    [
        (WA, "@whatsapp_4915112345678:example.org", None, "4915112345678"),
        (WA, "@whatsapp_lid-123456789012345:example.org", None, "lid-123456789012345"),
        (WA, "@whatsappbot:example.org", None, None),  # the bridge bot
        (WA, "@alice:example.org", None, None),
        (WA, "@whatsapp_:example.org", None, None),
        (WA, "@wa-4915112345678-x:example.org", "wa-{{ . }}-x", "4915112345678"),
        (WA, "@whatsapp_4915112345678:example.org", "wa-{{.}}", None),
        (SIGNAL, f"@signal_pni__{PNI}:example.org", None, f"pni_{PNI}"),
        (META, "@facebook_100012345678901:example.org", None, "100012345678901"),
        (META, "@instagram_17841400000000000:example.org", None, "17841400000000000"),
        (GM, "@gmessages_1.7:example.org", None, "1.7"),
        (SLACK, "@slack_t0123abcd-u0789ijkl:example.org", None, "t0123abcd-u0789ijkl"),
        (GENERIC, "@twitter_12345:example.org", None, None),  # no default template
        (GENERIC, "@twitter_12345:example.org", "twitter_{{.}}", "12345"),
    ],
)
def test_ghost_id__from_a_matrix_id_through_the_template(
    profile: NetworkProfile, mxid: str, configured: str | None, ghost_id: str | None
) -> None:
    assert profile.ghost_id(mxid, configured=configured) == ghost_id


def test_ghost_template__formats_the_mxid_mautrix_would() -> None:
    template = ghosts.GhostTemplate.parse("slack_{{.}}")
    assert template.mxid("T0123-U0456", "example.org") == "@slack__t0123-_u0456:example.org"
    assert template.ghost_id("@slack__t0123-_u0456:example.org") == "T0123-U0456"


@pytest.mark.parametrize("template", ["whatsapp_", "{{.}}_{{.}}", "{{.Name}}", "x_{{.}}{{if}}"])
def test_ghost_template__refuses_templates_without_exactly_one_placeholder(
    template: str,
) -> None:
    with pytest.raises(ValueError, match="ghost template"):
        ghosts.GhostTemplate.parse(template)


def test_catalog__names_the_known_networks_for_an_unknown_one() -> None:
    with pytest.raises(KeyError, match="whatsapp, signal, meta, gmessages, slack, generic"):
        catalog.get("telegram")


# -- the bridgev2 schema check -------------------------------------------------------------------


def _bridgev2(*extra_tables: str) -> dict[str, frozenset[str]]:
    tables = {t: frozenset({"bridge_id", "id"}) for t in schema.EXPECTED_TABLES}
    tables |= {t: frozenset({"version", "compat"}) for t in ("version", *extra_tables)}
    return tables


@pytest.mark.parametrize(
    ("tables", "owner", "network", "evidence"),
    [
        (_bridgev2("whatsapp_version", "whatsmeow_version"), None, "whatsapp", "whatsapp_version"),
        (_bridgev2("signalmeow_version"), None, "signal", "signalmeow_version"),
        # mautrix-meta also keeps a whatsmeow store: meta_version decides
        (_bridgev2("meta_version", "whatsmeow_version"), None, "meta", "meta_version"),
        (_bridgev2("gmessages_version", "gmessages_login_prefix"), None, "gmessages", "gmessages"),
        (_bridgev2("slack_version"), None, "slack", "slack_version"),
        (_bridgev2(), "megabridge/mautrix-slack", "slack", "database_owner"),
        (_bridgev2("whatsapp_version"), "megabridge/mautrix-meta", "meta", "database_owner"),
        (_bridgev2("twitter_version"), "megabridge/mautrix-twitter", None, "no table"),
        (_bridgev2("slack_version", "meta_version"), None, None, "several networks (meta, slack)"),
    ],
)
def test_schema_check__tells_the_network_of_a_bridgev2_database(
    tables: dict[str, frozenset[str]], owner: str | None, network: str | None, evidence: str
) -> None:
    verdict = schema.check(schema.SchemaFacts(tables, owner))
    assert verdict.bridgev2
    assert verdict.problem is None
    assert verdict.network == network
    assert evidence in verdict.evidence
    assert verdict.describe() == f"bridgev2, network {network or 'not known'} ({verdict.evidence})"


# mautrix/whatsapp database/upgrades/00-latest-revision.sql before commit ea2d8ba (v0.10.x)
LEGACY_WHATSAPP = {
    "user": frozenset({"mxid", "username", "agent", "device", "management_room"}),
    "portal": frozenset({"jid", "receiver", "mxid", "name", "topic", "avatar"}),
    "puppet": frozenset({"username", "displayname", "avatar", "custom_mxid"}),
    "message": frozenset({"chat_jid", "chat_receiver", "jid", "mxid", "sender", "timestamp"}),
    "reaction": frozenset({"chat_jid", "chat_receiver", "target_jid", "sender", "mxid", "jid"}),
    "version": frozenset({"version", "compat"}),
    "database_owner": frozenset({"key", "owner"}),
}


def test_schema_check__refuses_a_legacy_schema_in_one_line_naming_the_expected_tables() -> None:
    verdict = schema.check(schema.SchemaFacts(LEGACY_WHATSAPP, "mautrix-whatsapp"))
    assert not verdict.bridgev2
    assert verdict.network == "whatsapp"
    assert verdict.problem == (
        "a legacy (pre-bridgev2) mautrix schema (database_owner 'mautrix-whatsapp', "
        "table puppet, portal.jid, message.chat_jid); expected the bridgev2 tables message, "
        "portal, ghost, reaction, user_login, each with a bridge_id column"
    )
    assert "\n" not in verdict.describe()


@pytest.mark.parametrize(
    ("tables", "said"),
    [
        (
            {},
            "not a mautrix bridgev2 schema (no table message, portal, ghost, reaction, user_login)",
        ),
        (
            {**_bridgev2(), "portal": frozenset({"id", "receiver"})},
            "not a mautrix bridgev2 schema (no bridge_id in portal)",
        ),
        (
            {t: c for t, c in _bridgev2().items() if t != "ghost"},
            "not a mautrix bridgev2 schema (no table ghost)",
        ),
    ],
)
def test_schema_check__refuses_other_schemas_saying_what_is_missing(
    tables: dict[str, frozenset[str]], said: str
) -> None:
    verdict = schema.check(schema.SchemaFacts(tables))
    assert not verdict.bridgev2
    assert verdict.problem is not None
    assert verdict.problem.startswith(said + "; expected the bridgev2 tables message, portal")
