"""Opening asyncpg connections and pools, with driver errors translated at this one edge."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import asyncpg

from listener.core import errors, redact

# Errors that mean "the database or the network is not there right now".
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.ConnectionFailureError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.TooManyConnectionsError,
)

ErrorFactory = Callable[[str], errors.ArchiverError]


def describe(exc: BaseException) -> str:
    """A short, secret-free description of a driver error."""
    if isinstance(exc, asyncpg.PostgresError):
        return f"{type(exc).__name__}: {exc.args[0] if exc.args else ''}".strip()
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


async def _no_reset(_conn: asyncpg.Connection) -> None:
    return None


async def create_pool(
    dsn: str,
    *,
    application_name: str,
    max_size: int,
    command_timeout_s: float = 60.0,
    error: ErrorFactory = errors.SourceError,
) -> asyncpg.Pool:
    try:
        pool = await asyncpg.create_pool(
            dsn,
            min_size=1,
            max_size=max_size,
            command_timeout=command_timeout_s,
            server_settings={"application_name": application_name},
            # asyncpg's default reset (RESET ALL, UNLISTEN *, …) costs a round trip on every
            # release; our pooled connections never change session state (LISTEN has its own
            # connection, transactions are always closed), so there is nothing to reset.
            reset=_no_reset,
        )
    except (*CONNECTION_ERRORS, asyncpg.PostgresError, ValueError) as exc:
        raise error(f"cannot connect to {redact.redact_url(dsn)}: {describe(exc)}") from None
    assert pool is not None
    return pool


async def connect(
    dsn: str, *, application_name: str, error: ErrorFactory = errors.SourceError
) -> asyncpg.Connection:
    try:
        return await asyncpg.connect(
            dsn, server_settings={"application_name": application_name}, timeout=10
        )
    except (*CONNECTION_ERRORS, asyncpg.PostgresError) as exc:
        raise error(f"cannot connect to {redact.redact_url(dsn)}: {describe(exc)}") from None


async def fetch(
    pool: asyncpg.Pool, sql: str, *args: object, label: str, error: ErrorFactory
) -> list[asyncpg.Record]:
    """``pool.fetch`` with driver errors translated into ``error`` (naming ``label``)."""
    try:
        result: list[asyncpg.Record] = await pool.fetch(sql, *args)
    except (*CONNECTION_ERRORS, asyncpg.PostgresError) as exc:
        raise error(f"{label} failed: {describe(exc)}") from None
    return result
