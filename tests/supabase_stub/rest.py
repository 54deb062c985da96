"""The subset of PostgREST (v12, as Supabase runs it) that the archiver's requests use, on a real
PostgreSQL database, translated to SQL the way PostgREST builds it, so the archive schema's
triggers (the merge rules) run exactly as they would behind Supabase.

Sources for each behaviour (docs.postgrest.org, v12 "references/api" and "references/errors"):
- ``POST /t`` with a JSON array inserts through ``json_populate_recordset``; ``columns=`` names
  the columns (a missing key is NULL); without it every object must have the first one's keys
  (PGRST102 "All object keys must match"); an unknown column is PGRST204 (400).
- ``Prefer: resolution=merge-duplicates|ignore-duplicates`` with ``on_conflict=`` (default: the
  primary key) is ``ON CONFLICT (...) DO UPDATE SET c = EXCLUDED.c`` for the payload's columns,
  or ``DO NOTHING``; ``Prefer: return=minimal`` answers 201 without a body, ``representation``
  with the rows (``select=``) as a JSON array (only the rows actually written).
- ``PATCH /t?filters`` updates the payload's columns; 204 (minimal) or 200 with the rows.
- ``GET /t?select=&filters&order=&limit=&offset=`` answers ``json_agg`` of the rows, at most
  ``max_rows`` of them (Supabase's default 1000).
- filters ``col=[not.]op.value``: eq, neq, gt, gte, lt, lte, like, ilike, in.(a,"b,c"), is.null;
  ``col->key`` compares jsonb (numbers numerically), ``col->>key`` text. Values are untyped
  literals that PostgreSQL casts to the column's type (a bad one is 22P02, 400).
- an unknown table is 404 PGRST205 "Could not find the table 'public.x' in the schema cache";
  database errors keep their SQLSTATE in ``code`` with the HTTP status of PostgREST's table
  (23505 → 409, 08* → 503, 40*/57* → 500, everything else → 400).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import asyncpg

from tests.supabase_stub.httpserver import Request, Response

RESERVED = {"select", "order", "limit", "offset", "columns", "on_conflict"}
OPERATORS = {"eq": "=", "neq": "<>", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
_KEY = re.compile(r"^[A-Za-z0-9_]+$")
_STATUS_BY_PREFIX = [
    ("23503", 409), ("23505", 409), ("25006", 405), ("53400", 500), ("P0001", 400),
    ("42883", 404), ("42P01", 404), ("42501", 403), ("08", 503), ("09", 500), ("0L", 403),
    ("0P", 403), ("25", 500), ("28", 403), ("2D", 500), ("38", 500), ("39", 500), ("3B", 500),
    ("40", 500), ("53", 503), ("54", 500), ("55", 500), ("57", 500), ("58", 500), ("F0", 500),
    ("HV", 500), ("P0", 500), ("XX", 500),
]  # fmt: skip


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.response = error_response(status, code, message, details)


def error_response(
    status: int, code: str, message: str, details: Any = None, hint: Any = None
) -> Response:
    body = {"code": code, "details": details, "hint": hint, "message": message}
    return Response(status, json.dumps(body).encode(), {"content-type": "application/json"})


def status_for(sqlstate: str) -> int:
    for prefix, status in _STATUS_BY_PREFIX:
        if sqlstate.startswith(prefix):
            return status
    return 400


def q(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


@dataclass(frozen=True)
class Table:
    name: str
    types: dict[str, str]  # column -> format_type
    primary_key: tuple[str, ...]


def parse_prefer(header: str | None) -> dict[str, str]:
    prefs: dict[str, str] = {}
    for item in (header or "").split(","):
        name, _, value = item.strip().partition("=")
        if name:
            prefs[name] = value
    return prefs


def parse_in_list(text: str) -> list[str]:
    """``(a,"b,c",d)`` → [a, "b,c", d] (double quotes, backslash escapes)."""
    if not (text.startswith("(") and text.endswith(")")):
        raise ApiError(400, "PGRST100", f'"failed to parse filter (in.{text})"')
    items, current, quoted, escaped = [], [], False, False
    for char in text[1:-1]:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\" and quoted:
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == "," and not quoted:
            items.append("".join(current))
            current = []
        else:
            current.append(char)
    items.append("".join(current))
    return [] if items == [""] else items


class Rest:
    def __init__(self, pool: asyncpg.Pool, *, max_rows: int = 1000) -> None:
        self._pool = pool
        self.max_rows = max_rows
        self._tables: dict[str, Table] = {}

    async def handle(self, request: Request, table_name: str) -> Response:
        try:
            profile = request.headers.get("accept-profile") or request.headers.get(
                "content-profile"
            )
            if profile not in (None, "public"):
                raise ApiError(406, "PGRST106", "The schema must be one of the following: public")
            table = await self._table(table_name)
            if request.method == "GET":
                return await self._select(request, table)
            if request.method == "POST":
                return await self._insert(request, table)
            if request.method == "PATCH":
                return await self._update(request, table)
            raise ApiError(405, "PGRST117", f"Unsupported HTTP method: {request.method}")
        except ApiError as exc:
            return exc.response
        except asyncpg.PostgresError as exc:
            code = exc.sqlstate or "XX000"
            return error_response(
                status_for(code), code, str(getattr(exc, "message", exc)),
                getattr(exc, "detail", None), getattr(exc, "hint", None),
            )  # fmt: skip

    async def _table(self, name: str) -> Table:
        if name in self._tables:
            return self._tables[name]
        async with self._pool.acquire() as conn:
            columns = await conn.fetch(
                "SELECT a.attname, format_type(a.atttypid, a.atttypmod) AS type "
                "FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = 'public' AND c.relname = $1 AND c.relkind IN ('r', 'v', 'p') "
                "AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
                name,
            )
            if not columns:
                raise ApiError(
                    404,
                    "PGRST205",
                    f"Could not find the table 'public.{name}' in the schema cache",
                )
            keys = await conn.fetch(
                "SELECT a.attname FROM pg_index i JOIN pg_attribute a "
                "ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) "
                "WHERE i.indrelid = format('public.%I', $1::text)::regclass AND i.indisprimary",
                name,
            )
        table = Table(
            name, {r["attname"]: r["type"] for r in columns}, tuple(r["attname"] for r in keys)
        )
        self._tables[name] = table
        return table

    # -- columns, filters, order -----------------------------------------------------------------

    def _column(self, table: Table, name: str) -> str:
        if name not in table.types:
            raise ApiError(400, "42703", f"column {table.name}.{name} does not exist")
        return name

    def _select_list(self, table: Table, select: str | None) -> str:
        if select in (None, "", "*"):
            return "*"
        return ", ".join(q(self._column(table, c.strip().strip('"'))) for c in select.split(","))

    def _expression(self, table: Table, key: str) -> tuple[str, str]:
        """SQL for a filter's left side and the type its literal is cast to."""
        for arrow, kind in (("->>", "text"), ("->", "jsonb")):
            if arrow in key:
                column, _, path = key.partition(arrow)
                if not _KEY.match(path):
                    raise ApiError(400, "PGRST100", f'"failed to parse filter ({key})"')
                return f"{q(table.name)}.{q(self._column(table, column))}{arrow}'{path}'", kind
        return f"{q(table.name)}.{q(self._column(table, key))}", table.types[key]

    def _where(self, request: Request, table: Table, args: list[Any]) -> str:
        clauses = []
        for key, value in request.query:
            if key in RESERVED:
                continue
            expr, cast = self._expression(table, key)
            negate = value.startswith("not.")
            operator, _, literal = value.removeprefix("not.").partition(".")
            clauses.append(
                ("NOT " if negate else "") + self._condition(expr, cast, operator, literal, args)
            )
        return " AND ".join(clauses) or "true"

    def _condition(self, expr: str, cast: str, operator: str, literal: str, args: list[Any]) -> str:
        if operator in OPERATORS:
            args.append(literal)
            return f"{expr} {OPERATORS[operator]} ${len(args)}::text::{cast}"
        if operator in ("like", "ilike"):
            args.append(literal.replace("*", "%"))
            return f"{expr} {operator.upper()} ${len(args)}::text"
        if operator == "in":
            args.append(parse_in_list(literal))
            return f"{expr} = ANY(${len(args)}::text[]::{cast}[])"
        if operator == "is" and literal in ("null", "not_null", "true", "false", "unknown"):
            return f"{expr} IS {literal.replace('_', ' ').upper()}"
        raise ApiError(400, "PGRST100", f'"failed to parse filter ({operator}.{literal})"')

    def _order(self, request: Request, table: Table) -> str:
        order = request.param("order")
        if not order:
            return ""
        terms = []
        for term in order.split(","):
            column, *modifiers = term.split(".")
            sql = f"{q(table.name)}.{q(self._column(table, column))}"
            for modifier in modifiers:
                sql += {"asc": " ASC", "desc": " DESC", "nullsfirst": " NULLS FIRST",
                        "nullslast": " NULLS LAST"}.get(modifier, "")  # fmt: skip
            terms.append(sql)
        return " ORDER BY " + ", ".join(terms)

    def _limit(self, request: Request) -> str:
        limit = min(int(request.param("limit") or self.max_rows), self.max_rows)
        offset = int(request.param("offset") or 0)
        return f" LIMIT {limit} OFFSET {offset}"

    # -- verbs ---------------------------------------------------------------------------------

    async def _select(self, request: Request, table: Table) -> Response:
        args: list[Any] = []
        columns = self._select_list(table, request.param("select"))
        sql = (
            f"SELECT coalesce(json_agg(pgrst_t), '[]')::text FROM (SELECT {columns} "
            f"FROM {q(table.name)} WHERE {self._where(request, table, args)}"
            f"{self._order(request, table)}{self._limit(request)}) pgrst_t"
        )
        async with self._pool.acquire() as conn:
            body = await conn.fetchval(sql, *args)
        return Response(200, body.encode(), {"content-type": "application/json; charset=utf-8"})

    def _payload(self, request: Request) -> list[dict[str, Any]]:
        try:
            payload = json.loads(request.body)
        except ValueError:
            raise ApiError(400, "PGRST102", "Empty or invalid json") from None
        rows = payload if isinstance(payload, list) else [payload]
        if not all(isinstance(row, dict) for row in rows):
            raise ApiError(400, "PGRST102", "Empty or invalid json")
        return rows

    def _insert_columns(
        self, request: Request, table: Table, rows: list[dict[str, Any]]
    ) -> list[str]:
        named = request.param("columns")
        if named:
            columns = [c.strip().strip('"') for c in named.split(",")]
        else:
            columns = list(rows[0]) if rows else []
            if any(set(row) != set(columns) for row in rows):
                raise ApiError(400, "PGRST102", "All object keys must match")
        for column in columns:
            if column not in table.types:
                raise ApiError(
                    400,
                    "PGRST204",
                    f"Could not find the '{column}' column of '{table.name}' in the schema cache",
                )
        return columns

    def _returning(self, request: Request, table: Table, prefs: dict[str, str]) -> str | None:
        if prefs.get("return") != "representation":
            return None
        return self._select_list(table, request.param("select"))

    async def _insert(self, request: Request, table: Table) -> Response:
        rows = self._payload(request)
        prefs = parse_prefer(request.headers.get("prefer"))
        columns = self._insert_columns(request, table, rows)
        returning = self._returning(request, table, prefs)
        if not rows or not columns:
            return self._written(201, "[]" if returning else None)
        listed = ", ".join(q(c) for c in columns)
        sql = (
            f"INSERT INTO {q(table.name)} ({listed}) SELECT {listed} "
            f"FROM json_populate_recordset(NULL::{q(table.name)}, $1::json)"
            + self._on_conflict(request, table, prefs, columns)
        )
        return self._written(
            201, await self._run(sql, json.dumps(rows), returning=returning, table=table)
        )

    def _on_conflict(
        self, request: Request, table: Table, prefs: dict[str, str], columns: list[str]
    ) -> str:
        resolution = prefs.get("resolution")
        if resolution not in ("merge-duplicates", "ignore-duplicates"):
            return ""
        target = request.param("on_conflict")
        keys = [k.strip() for k in target.split(",")] if target else list(table.primary_key)
        for key in keys:
            self._column(table, key)
        conflict = f" ON CONFLICT ({', '.join(q(k) for k in keys)})"
        if resolution == "ignore-duplicates":
            return conflict + " DO NOTHING"
        sets = ", ".join(f"{q(c)} = EXCLUDED.{q(c)}" for c in columns)
        return conflict + f" DO UPDATE SET {sets}"

    async def _update(self, request: Request, table: Table) -> Response:
        payload = self._payload(request)
        if len(payload) != 1:
            raise ApiError(400, "PGRST102", "Empty or invalid json")
        prefs = parse_prefer(request.headers.get("prefer"))
        columns = [self._column(table, c) for c in payload[0]]
        returning = self._returning(request, table, prefs)
        args: list[Any] = [json.dumps(payload[0])]
        sets = ", ".join(f"{q(c)} = pgrst_body.{q(c)}" for c in columns)
        sql = (
            f"UPDATE {q(table.name)} SET {sets} "
            f"FROM (SELECT * FROM json_populate_record(NULL::{q(table.name)}, $1::json)) "
            "pgrst_body "
            f"WHERE {self._where(request, table, args)}"
        )
        body = await self._run(sql, *args, returning=returning, table=table)
        return self._written(200 if returning else 204, body)

    async def _run(self, sql: str, *args: Any, returning: str | None, table: Table) -> str | None:
        async with self._pool.acquire() as conn:
            if returning is None:
                await conn.execute(sql, *args)
                return None
            wrapped = (
                f"WITH pgrst_source AS ({sql} RETURNING {q(table.name)}.*) "
                f"SELECT coalesce(json_agg(pgrst_t), '[]')::text "
                f"FROM (SELECT {returning} FROM pgrst_source) pgrst_t"
            )
            result: str = await conn.fetchval(wrapped, *args)
            return result

    def _written(self, status: int, body: str | None) -> Response:
        headers = {"content-range": "*/*"}
        if body is None:
            return Response(status, b"", headers)
        headers["content-type"] = "application/json; charset=utf-8"
        return Response(status, body.encode(), headers)
