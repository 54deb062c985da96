"""Opening asyncpg connections and pools, with driver errors translated at this one edge."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

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


class DiscardingConnection(asyncpg.Connection):  # type: ignore[misc]
    """A connection that discards itself when asyncpg finds its protocol in an impossible state.

    When the server ends a session (``pg_terminate_backend``, a restart, a failover) it sends a
    FATAL error and closes the socket. If the connection is idle in a pool, or between queries,
    asyncpg may read the error before it sees the socket close; until then the connection looks
    open, the pool hands it out, and the next query fails with ``InternalClientError: cannot
    switch to state 12; another operation (2) is in progress`` (MagicStack/asyncpg#1069). That is
    not a bug of ours to crash on: the connection is dead. It is terminated here, so the pool
    never hands it out again, and the error is reported as the connection failure it is
    (``ConnectionDoesNotExistError``, one of :data:`CONNECTION_ERRORS`), so the caller retries on
    a new connection.
    """

    async def _discarding(self, operation: Awaitable[Any]) -> Any:
        try:
            return await operation
        except asyncpg.exceptions.InternalClientError as exc:
            self.terminate()
            raise asyncpg.exceptions.ConnectionDoesNotExistError(
                f"connection discarded after an internal protocol error ({exc})"
            ) from None

    async def execute(self, *args: Any, **kwargs: Any) -> Any:
        return await self._discarding(super().execute(*args, **kwargs))

    async def executemany(self, *args: Any, **kwargs: Any) -> Any:
        return await self._discarding(super().executemany(*args, **kwargs))

    async def fetch(self, *args: Any, **kwargs: Any) -> Any:
        return await self._discarding(super().fetch(*args, **kwargs))

    async def fetchval(self, *args: Any, **kwargs: Any) -> Any:
        return await self._discarding(super().fetchval(*args, **kwargs))

    async def fetchrow(self, *args: Any, **kwargs: Any) -> Any:
        return await self._discarding(super().fetchrow(*args, **kwargs))


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
    read_only: bool = False,
) -> asyncpg.Pool:
    server_settings = {"application_name": application_name}
    if read_only:
        # A reader cannot write even through a bug, whatever its role may do.
        server_settings["default_transaction_read_only"] = "on"
    try:
        pool = await asyncpg.create_pool(
            dsn,
            min_size=1,
            max_size=max_size,
            command_timeout=command_timeout_s,
            server_settings=server_settings,
            # asyncpg's default reset (RESET ALL, UNLISTEN *, …) costs a round trip on every
            # release; our pooled connections never change session state (LISTEN has its own
            # connection, transactions are always closed), so there is nothing to reset.
            reset=_no_reset,
            connection_class=DiscardingConnection,
        )
    except (*CONNECTION_ERRORS, asyncpg.PostgresError, ValueError) as exc:
        raise error(f"cannot connect to {redact.redact_url(dsn)}: {describe(exc)}") from None
    assert pool is not None
    return pool


async def connect(
    dsn: str, *, application_name: str, error: ErrorFactory = errors.SourceError
) -> asyncpg.Connection:
    try:
        conn: asyncpg.Connection = await asyncpg.connect(
            dsn,
            server_settings={"application_name": application_name},
            timeout=10,
            connection_class=DiscardingConnection,
        )
        return conn
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
