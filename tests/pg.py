"""Throwaway PostgreSQL databases for tests: one template per schema per session, cloned per test.

Tests talk to a real server (never a mock). The server is the one named by ``TEST_PG_URL``
(default: the local cluster as ``postgres`` on 127.0.0.1:5432).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

ADMIN_URL = os.environ.get("TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REPO = Path(__file__).resolve().parents[1]


def url_for(database: str) -> str:
    """The admin URL with its database name replaced (query parameters such as host= kept)."""
    return urlunsplit(urlsplit(ADMIN_URL)._replace(path=f"/{database}"))


def unique_name(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


async def admin_execute(sql: str) -> None:
    conn = await asyncpg.connect(ADMIN_URL)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def drop_database(name: str) -> None:
    await admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def create_database(
    name: str, *, template: str | None = None, collate_c: bool = False
) -> str:
    """Create ``name`` (from ``template`` if given) and return its URL."""
    await drop_database(name)
    if template:
        await admin_execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    elif collate_c:
        await admin_execute(
            f"CREATE DATABASE \"{name}\" ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C' "
            "TEMPLATE template0"
        )
    else:
        await admin_execute(f'CREATE DATABASE "{name}"')
    return url_for(name)


async def build_template(name: str, setup: Callable[[asyncpg.Connection], Awaitable[None]]) -> str:
    """Create a template database ``name`` and fill it with ``setup``; returns its name."""
    await create_database(name)
    conn = await asyncpg.connect(url_for(name))
    try:
        await setup(conn)
    finally:
        await conn.close()
    return name
