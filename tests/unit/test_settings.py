"""listener.settings: the only reader of the environment; errors name settings, not secrets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from listener import settings
from listener.core import errors

PASSWORD = "hunter2-Sup3rSecret"
WHATSAPP_URL = f"postgresql://bridge:{PASSWORD}@db.internal:5432/whatsapp"
SYNAPSE_URL = f"postgres://synapse:{PASSWORD}@db.internal/synapse"
PICKLE_KEY = "pickle-key-0123456789-must-never-show"
ARCHIVE_URL = f"postgresql://archiver:{PASSWORD}@archive.internal/archive?sslmode=require"
SUPABASE_KEY = "eyJhbGciOiJIUzI1NiJ9.service-role-key"


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """An environment with only the three URLs set, and no .env file to pick up."""
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.lower() in settings.Settings.model_fields:
            monkeypatch.delenv(name)
    monkeypatch.setenv("WHATSAPP_DB_URL", WHATSAPP_URL)
    monkeypatch.setenv("SYNAPSE_DB_URL", SYNAPSE_URL)
    monkeypatch.setenv("ARCHIVE_DB_URL", ARCHIVE_URL)
    return monkeypatch


def _config_error() -> str:
    with pytest.raises(errors.ConfigError) as info:
        settings.load_settings()
    return str(info.value)


def test_load_settings__defaults_with_required_urls(env: pytest.MonkeyPatch) -> None:
    config = settings.load_settings()

    assert config.whatsapp_db_url.get_secret_value() == WHATSAPP_URL
    assert config.synapse_db_url.get_secret_value() == SYNAPSE_URL
    assert config.archive_db_url is not None
    assert config.archive_db_url.get_secret_value() == ARCHIVE_URL
    assert (config.batch_size, config.poll_interval_ms, config.poll_interval_s) == (100, 5000, 5.0)
    assert (config.monitored_rooms, config.notify_channel) == ((), "archiver_db")
    assert config.sweep_gap_timeout_s == 120.0


@pytest.mark.parametrize(
    ("missing", "expected"),
    [
        (["WHATSAPP_DB_URL"], "invalid settings: WHATSAPP_DB_URL: Field required"),
        (["SYNAPSE_DB_URL"], "invalid settings: SYNAPSE_DB_URL: Field required"),
        (
            ["WHATSAPP_DB_URL", "SYNAPSE_DB_URL"],
            "invalid settings: WHATSAPP_DB_URL: Field required; SYNAPSE_DB_URL: Field required",
        ),
    ],
)
def test_load_settings__missing_required_url_is_named(
    env: pytest.MonkeyPatch, missing: list[str], expected: str
) -> None:
    for name in missing:
        env.delenv(name)

    assert _config_error() == expected


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("BATCH_SIZE", "lots", "BATCH_SIZE: Input should be a valid integer"),
        ("BATCH_SIZE", "0", "BATCH_SIZE: Input should be greater than or equal to 1"),
        ("BATCH_SIZE", "10001", "BATCH_SIZE: Input should be less than or equal to 10000"),
        ("POLL_INTERVAL_MS", "99", "POLL_INTERVAL_MS: Input should be greater than or equal"),
        ("WORKERS", "1.5", "WORKERS: Input should be a valid integer"),
        ("SWEEP_GAP_TIMEOUT_S", "0", "SWEEP_GAP_TIMEOUT_S: Input should be greater than 0"),
        ("NOTIFY_CHANNEL", "Bad-Name", "NOTIFY_CHANNEL: must be a lower-case SQL identifier"),
        ("NOTIFY_CHANNEL", "x; drop", "NOTIFY_CHANNEL: must be a lower-case SQL identifier"),
        ("LOG_FORMAT", "xml", "LOG_FORMAT: Input should be 'text' or 'json'"),
    ],
)
def test_load_settings__malformed_value_names_the_setting(
    env: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    env.setenv(name, value)

    error = _config_error()

    assert error.startswith(f"invalid settings: {message}")
    assert PASSWORD not in error


@pytest.mark.parametrize("name", ["WHATSAPP_DB_URL", "SYNAPSE_DB_URL", "ARCHIVE_DB_URL"])
@pytest.mark.parametrize(
    "url",
    [
        f"mysql://root:{PASSWORD}@db/whatsapp",
        f"https://user:{PASSWORD}@db.example/whatsapp",
        f"host=db user=bridge password={PASSWORD}",
        f" postgresql://bridge:{PASSWORD}@db/whatsapp",
    ],
)
def test_load_settings__non_postgres_url_rejected_without_echoing_password(
    env: pytest.MonkeyPatch, name: str, url: str
) -> None:
    env.setenv(name, url)

    error = _config_error()

    assert error == f"invalid settings: {name}: must be a postgresql:// URL"
    assert PASSWORD not in error


def test_config_error__does_not_chain_the_validation_error(env: pytest.MonkeyPatch) -> None:
    env.setenv("WHATSAPP_DB_URL", f"mysql://root:{PASSWORD}@db/whatsapp")

    with pytest.raises(errors.ConfigError) as info:
        settings.load_settings()

    # pydantic's own message carries input_value=...; it must not be shown as the cause.
    assert info.value.__cause__ is None
    assert info.value.__suppress_context__ is True


def test_settings__repr_and_str_hide_every_secret(env: pytest.MonkeyPatch) -> None:
    env.setenv("SUPABASE_URL", "https://project.supabase.co")
    env.setenv("SUPABASE_KEY", SUPABASE_KEY)
    env.setenv("BRIDGE_PICKLE_KEY", PICKLE_KEY)

    config = settings.load_settings()

    for rendering in (repr(config), str(config), repr(config.model_dump())):
        assert PASSWORD not in rendering
        assert SUPABASE_KEY not in rendering
        assert PICKLE_KEY not in rendering
    assert "SecretStr('**********')" in repr(config)


def test_settings__secrets_lists_every_secret_value(env: pytest.MonkeyPatch) -> None:
    env.setenv("SUPABASE_URL", "https://project.supabase.co")
    env.setenv("SUPABASE_KEY", SUPABASE_KEY)
    env.setenv("BRIDGE_PICKLE_KEY", PICKLE_KEY)

    assert settings.load_settings().secrets() == [
        WHATSAPP_URL,
        SYNAPSE_URL,
        ARCHIVE_URL,
        SUPABASE_KEY,
        PICKLE_KEY,
    ]


def test_load_settings__pickle_key_is_optional_and_never_empty(env: pytest.MonkeyPatch) -> None:
    assert settings.load_settings().bridge_pickle_key is None
    env.setenv("BRIDGE_PICKLE_KEY", "")
    with pytest.raises(errors.ConfigError, match="BRIDGE_PICKLE_KEY: must not be empty"):
        settings.load_settings()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", ()),
        ("!abc:example.org", ("!abc:example.org",)),
        (
            " !abc:example.org , 120363012345678901@g.us ,, ",
            ("!abc:example.org", "120363012345678901@g.us"),
        ),
        ("4915112345678@s.whatsapp.net,", ("4915112345678@s.whatsapp.net",)),
        ("123456789012345@lid", ("123456789012345@lid",)),
    ],
)
def test_load_settings__monitored_rooms_comma_list(
    env: pytest.MonkeyPatch, value: str, expected: tuple[str, ...]
) -> None:
    env.setenv("MONITORED_ROOMS", value)

    assert settings.load_settings().monitored_rooms == expected


@pytest.mark.parametrize(
    ("value", "bad_item"),
    [
        ("general", "general"),
        ("!ok:example.org, family chat", "family chat"),
        ('["!a:example.org"]', '["!a:example.org"]'),
    ],
)
def test_load_settings__monitored_rooms_rejects_names_that_are_not_ids(
    env: pytest.MonkeyPatch, value: str, bad_item: str
) -> None:
    env.setenv("MONITORED_ROOMS", value)

    assert _config_error() == (
        f"invalid settings: MONITORED_ROOMS: {bad_item!r} is neither a Matrix room ID (!…) "
        "nor a WhatsApp chat ID (…@…)"
    )


def test_load_settings__monitored_rooms_accepts_a_list_override(env: pytest.MonkeyPatch) -> None:
    config = settings.load_settings(monitored_rooms=[" !a:example.org ", "1@g.us", ""])

    assert config.monitored_rooms == ("!a:example.org", "1@g.us")


def test_load_settings__no_sink_is_a_clear_error(env: pytest.MonkeyPatch) -> None:
    env.delenv("ARCHIVE_DB_URL")

    assert _config_error() == (
        "invalid settings: set ARCHIVE_DB_URL (PostgreSQL sink) or SUPABASE_URL (Supabase sink)"
    )


@pytest.mark.parametrize(
    ("supabase_key", "expected_error"),
    [
        (SUPABASE_KEY, None),
        (None, "invalid settings: SUPABASE_KEY is required when SUPABASE_URL is set"),
    ],
)
def test_load_settings__supabase_sink_needs_its_key(
    env: pytest.MonkeyPatch, supabase_key: str | None, expected_error: str | None
) -> None:
    env.delenv("ARCHIVE_DB_URL")
    env.setenv("SUPABASE_URL", "https://project.supabase.co")
    if supabase_key is not None:
        env.setenv("SUPABASE_KEY", supabase_key)

    if expected_error is None:
        config = settings.load_settings()
        assert (config.archive_db_url, config.supabase_url) == (None, "https://project.supabase.co")
    else:
        assert _config_error() == expected_error


def test_load_settings__dot_env_in_working_directory_is_read(
    env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / ".env").write_text("BATCH_SIZE=250\nMONITORED_ROOMS=!x:example.org\n")

    config = settings.load_settings()

    assert (config.batch_size, config.monitored_rooms) == (250, ("!x:example.org",))


@pytest.mark.parametrize(
    ("value", "expected"),
    [("debug", "DEBUG"), ("Warning", "WARNING"), ("ERROR", "ERROR")],
)
def test_load_settings__log_level_is_case_insensitive(
    env: pytest.MonkeyPatch, value: str, expected: str
) -> None:
    env.setenv("LOG_LEVEL", value)

    assert settings.load_settings().log_level == expected
