"""Settings: the only reader of the environment (and of an optional ``.env`` file).

Names are the ones operators already use (the seed design's variables). A missing or malformed
setting fails at start with one line that names it and never echoes its value, because values
here include passwords.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from listener.core import errors

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_POSTGRES_SCHEMES = ("postgres://", "postgresql://")


def _check_postgres_url(value: SecretStr | None) -> SecretStr | None:
    if value is None:
        return None
    url = value.get_secret_value()
    if not url.startswith(_POSTGRES_SCHEMES):
        raise ValueError("must be a postgresql:// URL")
    try:
        # The driver parses the port lazily and would fail with a traceback at connect time.
        urlsplit(url).port  # noqa: B018
    except ValueError:
        raise ValueError("has a malformed host or port") from None
    return value


class Settings(BaseSettings):
    """Everything a user might tune; units are in the names."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False
    )

    whatsapp_db_url: SecretStr
    synapse_db_url: SecretStr
    archive_db_url: SecretStr | None = None
    supabase_url: str | None = None
    supabase_key: SecretStr | None = None

    poll_interval_ms: int = Field(5000, ge=100, le=3_600_000)
    batch_size: int = Field(100, ge=1, le=10_000)
    monitored_rooms: Annotated[tuple[str, ...], NoDecode] = ()
    auto_register_rooms: bool = False
    bridge_id: str = ""
    notify_channel: str = "archiver_db"

    workers: int = Field(4, ge=1, le=64)
    queue_size: int = Field(10_000, ge=1, le=1_000_000)
    missing_event_timeout_s: float = Field(60.0, gt=0)
    missing_event_retry_s: float = Field(1.0, gt=0)
    sweep_gap_timeout_s: float = Field(120.0, gt=0)
    sweep_limit_rows: int = Field(5000, ge=1)
    # A LISTEN connection that dies without a FIN or RST (a black hole) is noticed within
    # interval + interval/4 + timeout = 4.5 s by default; a SELECT 1 every 2 s while the channel
    # is quiet costs the bridge nothing.
    listener_probe_interval_s: float = Field(2.0, gt=0)
    listener_probe_timeout_s: float = Field(2.0, gt=0)
    reconnect_max_backoff_s: float = Field(30.0, gt=0)
    shutdown_grace_s: float = Field(20.0, gt=0)

    media_store_path: Path | None = None
    download_media: bool = True
    # media: where the PostgreSQL sink keeps the bytes (content-addressed), and the copy work.
    media_archive_path: Path | None = None
    media_workers: int = Field(2, ge=1, le=64)  # concurrent copies of files over 4 MiB
    media_small_file_workers: int = Field(8, ge=1, le=64)  # ... of files up to 4 MiB
    media_queue_size: int = Field(10_000, ge=1)
    media_upload_wait_s: float = Field(30.0, gt=0)
    media_upload_poll_s: float = Field(1.0, gt=0)
    media_missing_retry_s: float = Field(900.0, gt=0)
    media_catchup_interval_s: float = Field(300.0, gt=0)
    archive_quarantined_media: bool = False
    synapse_server_name: str | None = None
    media_http_fallback_url: str | None = None
    media_access_token: SecretStr | None = None

    # e2ee: decrypt encrypted portals with the bridge's Megolm sessions (opt-in). The bridge
    # config's encryption.pickle_key, passed to mautrix-go as its raw bytes
    # (bridgev2/matrix/cryptostore.go: []byte(pickleKey)).
    bridge_pickle_key: SecretStr | None = None
    e2ee_session_cache_size: int = Field(1000, ge=1, le=1_000_000)  # unpickled sessions kept
    # Undecrypted messages whose session may have arrived, looked up per reconcile pass.
    e2ee_retry_messages: int = Field(500, ge=1, le=100_000)

    # fidelity: the Synapse reconciliation pass (edits, deletions, reactions, lost rows).
    reconcile_interval_s: float = Field(30.0, gt=0)
    reconcile_grace_s: float = Field(10.0, ge=0)

    metrics_addr: str = "127.0.0.1:9464"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = "text"

    # operations: readiness probes, the heartbeat and systemd's notification protocol.
    health_check_interval_s: float = Field(5.0, gt=0)
    health_check_timeout_s: float = Field(5.0, gt=0)
    # Set by systemd (Type=notify, WatchdogSec=); absent outside systemd.
    notify_socket: str | None = None
    watchdog_usec: int | None = Field(None, ge=0)
    watchdog_pid: int | None = None

    @field_validator("whatsapp_db_url", "synapse_db_url", "archive_db_url")
    @classmethod
    def _postgres_url(cls, value: SecretStr | None) -> SecretStr | None:
        return _check_postgres_url(value)

    @field_validator("bridge_pickle_key")
    @classmethod
    def _pickle_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value():
            raise ValueError("must not be empty (unset it to keep ciphertext)")
        return value

    @field_validator("monitored_rooms", mode="before")
    @classmethod
    def _split_rooms(cls, value: object) -> tuple[str, ...]:
        if isinstance(value, str):
            items = tuple(item.strip() for item in value.split(",") if item.strip())
        elif isinstance(value, (list, tuple)):
            items = tuple(str(item).strip() for item in value if str(item).strip())
        else:
            raise ValueError("must be a comma-separated list")
        for item in items:
            if not (item.startswith("!") or "@" in item):
                raise ValueError(
                    f"{item!r} is neither a Matrix room ID (!…) nor a WhatsApp chat ID (…@…)"
                )
        return items

    @field_validator("notify_channel")
    @classmethod
    def _channel(cls, value: str) -> str:
        if not _IDENTIFIER.match(value):
            raise ValueError("must be a lower-case SQL identifier (letters, digits, _)")
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _one_sink(self) -> Settings:
        if self.supabase_url is None and self.archive_db_url is None:
            raise ValueError("set ARCHIVE_DB_URL (PostgreSQL sink) or SUPABASE_URL (Supabase sink)")
        if self.supabase_url is not None and self.supabase_key is None:
            raise ValueError("SUPABASE_KEY is required when SUPABASE_URL is set")
        return self

    @property
    def poll_interval_s(self) -> float:
        return self.poll_interval_ms / 1000.0

    @property
    def metrics_host_port(self) -> tuple[str, int]:
        host, _, port = self.metrics_addr.rpartition(":")
        return host.strip("[]") or "127.0.0.1", int(port)

    def secrets(self) -> list[str]:
        """Every secret value, for scrubbing text that might contain one."""
        values = [
            self.whatsapp_db_url,
            self.synapse_db_url,
            self.archive_db_url,
            self.supabase_key,
            self.supabase_db_url,
            self.media_access_token,
            self.bridge_pickle_key,
        ]
        return [v.get_secret_value() for v in values if v is not None]

    # supabase: the sink (SUPABASE_URL/SUPABASE_KEY above), its media bucket and its HTTP limits.
    # Supabase's database, for `archiver-db migrate` (the same sql/archive files, via asyncpg).
    supabase_db_url: SecretStr | None = None
    media_bucket: str = Field("archive-media", pattern=r"^[a-z0-9][a-z0-9._-]{1,62}$")
    supabase_timeout_s: float = Field(30.0, gt=0)
    # Our own retries of one request (429, 5xx, timeouts, dropped connections) before the
    # pipeline is told SinkUnavailable and holds its place (it then retries with its backoff).
    supabase_retry_budget_s: float = Field(10.0, gt=0)
    supabase_max_retry_after_s: float = Field(60.0, gt=0)
    # Rows per PostgREST request are cut to stay under this many bytes of JSON.
    supabase_max_request_bytes: int = Field(1_000_000, ge=10_000)
    # Media larger than this goes through the resumable (TUS) protocol in 6 MiB chunks.
    supabase_tus_threshold_bytes: int = Field(6 * 1024 * 1024, ge=1)
    # Where media is staged (verified, decrypted) before the upload; default: the temp dir.
    supabase_staging_path: Path | None = None

    @field_validator("supabase_db_url")
    @classmethod
    def _supabase_db_url(cls, value: SecretStr | None) -> SecretStr | None:
        return _check_postgres_url(value)


class ChannelSettings(BaseSettings):
    """The NOTIFY channel alone, for installing the trigger without the service's settings."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False
    )

    notify_channel: str = "archiver_db"

    @field_validator("notify_channel")
    @classmethod
    def _channel(cls, value: str) -> str:
        return Settings._channel(value)


class ViewerSettings(BaseSettings):
    """What ``archiver-db serve`` needs: the archive (read only) and where its media is, not
    the bridge or Synapse."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False
    )

    archive_db_url: SecretStr | None = None
    supabase_url: str | None = None
    supabase_key: SecretStr | None = None
    supabase_db_url: SecretStr | None = None
    media_bucket: str = Field("archive-media", pattern=r"^[a-z0-9][a-z0-9._-]{1,62}$")
    media_archive_path: Path | None = None
    # Reachable from this host only unless an address is given on purpose (the viewer shows
    # private chats): put a TLS reverse proxy in front to publish it.
    viewer_addr: str = "127.0.0.1:8080"
    viewer_token: SecretStr | None = None
    viewer_timezone: str = "UTC"
    viewer_page_size: int = Field(100, ge=10, le=500)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = "text"

    @field_validator("archive_db_url", "supabase_db_url")
    @classmethod
    def _postgres_url(cls, value: SecretStr | None) -> SecretStr | None:
        return _check_postgres_url(value)

    @field_validator("viewer_token")
    @classmethod
    def _token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("must be at least 16 characters (or unset: one is generated)")
        return value

    @field_validator("viewer_timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("is not an IANA time zone (e.g. Europe/Berlin)") from None
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return Settings._upper(value)

    @model_validator(mode="after")
    def _one_archive(self) -> ViewerSettings:
        if self.supabase_url is not None:
            if self.supabase_db_url is None or self.supabase_key is None:
                raise ValueError(
                    "the viewer reads a Supabase archive through SUPABASE_DB_URL and its media "
                    "through SUPABASE_KEY: set both"
                )
        elif self.archive_db_url is None:
            raise ValueError("set ARCHIVE_DB_URL (or SUPABASE_URL with SUPABASE_DB_URL)")
        return self

    @property
    def archive_url(self) -> str:
        url = self.supabase_db_url if self.supabase_url is not None else self.archive_db_url
        assert url is not None  # the validator above
        return url.get_secret_value()

    def secrets(self) -> list[str]:
        values = [self.archive_db_url, self.supabase_key, self.supabase_db_url, self.viewer_token]
        return [v.get_secret_value() for v in values if v is not None]


def load_viewer_settings(**overrides: object) -> ViewerSettings:
    try:
        return ViewerSettings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise errors.ConfigError(f"invalid settings: {describe_validation_error(exc)}") from None


def load_channel_settings() -> ChannelSettings:
    try:
        return ChannelSettings()
    except ValidationError as exc:
        raise errors.ConfigError(f"invalid settings: {describe_validation_error(exc)}") from None


def describe_validation_error(exc: ValidationError) -> str:
    """One line per problem, naming the environment variable, never echoing its value."""
    lines = []
    for error in exc.errors(include_input=False, include_url=False):
        location = "_".join(str(part) for part in error["loc"]).upper()
        message = str(error["msg"]).removeprefix("Value error, ")
        lines.append(f"{location}: {message}" if location else message)
    return "; ".join(lines)


def load_settings(**overrides: object) -> Settings:
    """Read the settings; raise ConfigError with a one-line, secret-free message on failure."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise errors.ConfigError(f"invalid settings: {describe_validation_error(exc)}") from None
