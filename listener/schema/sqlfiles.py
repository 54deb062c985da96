"""The shipped SQL files, and the psql-variable handling that lets the CLI run them.

Operators run ``sql/*.sql`` with ``psql -f``; the CLI installers run the very same files through
asyncpg. :func:`render_psql_script` turns such a script into plain SQL by applying the few psql
meta-commands our files use (``\\set``, ``\\if``/``\\elif``/``\\else``/``\\endif``) and the
quoted variable forms ``:'var'`` (a string literal) and ``:"var"`` (an identifier). Like psql,
it leaves string literals, quoted identifiers, dollar-quoted bodies and comments alone. Any other
meta-command is an error, so a script cannot silently mean something else to the CLI.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import Protocol

REPO_SQL_DIR = Path(__file__).resolve().parents[2] / "sql"

# Outside quotes, the constructs whose contents psql does not touch, plus variables and
# meta-commands. A `$tag$` or `E'` glued to an identifier is part of the identifier.
_TOKEN = re.compile(
    r"""
      (?P<dollar>(?<![\w$])\$(?:[A-Za-z_\x80-\U0010ffff][\w\x80-\U0010ffff]*)?\$)
    | (?P<estring>(?<![\w$])[Ee]')
    | (?P<string>')
    | (?P<ident>")
    | (?P<line_comment>--)
    | (?P<block_comment>/\*)
    | (?P<cast>::)
    | (?P<var>:(?:'\w+'|"\w+"|\{\?\w+\}|\w+))
    | (?P<meta>\\)
    """,
    re.VERBOSE,
)
_ESTRING_END = re.compile(r"(?:[^'\\]|\\.|'')*'", re.DOTALL)
_STRING_END = re.compile(r"(?:[^']|'')*'")
_IDENT_END = re.compile(r'(?:[^"]|"")*"')
_BLOCK_COMMENT_PART = re.compile(r"/\*|\*/")
_META_ARG = re.compile(r"'(?:[^']|'')*'|\S+")
_BOOLEANS = {
    **dict.fromkeys(("true", "t", "on", "yes", "y", "1"), True),
    **dict.fromkeys(("false", "f", "off", "no", "n", "0"), False),
}


class _Executor(Protocol):
    """The part of ``asyncpg.Connection`` that :func:`run_sql_file` uses."""

    async def execute(self, query: str) -> object: ...

    def is_in_transaction(self) -> bool: ...


def sql_path(name: str) -> Path:
    """The path of a shipped SQL file, e.g. ``sql_path("archive/0001_init.sql")``.

    Looks inside the installed package first (the wheel carries ``sql/`` as ``listener/sql``),
    then in the source checkout's top-level ``sql/``.
    """
    relative = PurePosixPath(name)
    if relative.is_absolute() or ".." in relative.parts or not relative.parts:
        raise ValueError(f"{name!r} is not a relative path inside sql/")
    packaged = resources.files("listener").joinpath("sql", *relative.parts)
    if isinstance(packaged, Path) and packaged.exists():
        return packaged
    checkout = REPO_SQL_DIR.joinpath(*relative.parts)
    if checkout.exists():
        return checkout
    raise FileNotFoundError(
        f"shipped SQL file {name!r} not found in listener/sql or {REPO_SQL_DIR}"
    )


async def run_sql_file(conn: _Executor, name: str, variables: Mapping[str, str]) -> None:
    """Render the shipped psql script ``name`` with ``variables`` and execute it on ``conn``.

    The whole rendered text goes in one simple-protocol round trip, so a script wrapped in
    BEGIN/COMMIT applies atomically. Do not call it inside a transaction of your own when the
    script has its own BEGIN/COMMIT. Driver errors propagate unchanged (the caller translates).
    """
    sql = render_psql_script(sql_path(name).read_text(encoding="utf-8"), variables)
    outside = not conn.is_in_transaction()
    try:
        await conn.execute(sql)
    except Exception:
        # A failed statement after the script's BEGIN leaves the session in an aborted
        # transaction block; end it so the connection stays usable.
        if outside and conn.is_in_transaction():
            await conn.execute("ROLLBACK")
        raise


def render_psql_script(text: str, variables: Mapping[str, str]) -> str:
    """Plain SQL from a psql script, as ``psql -v name=value ... -f`` would run it."""
    state = _State(variables=dict(variables))
    pos = 0
    while (match := _TOKEN.search(text, pos)) is not None:
        kind = match.lastgroup
        if kind == "meta":
            # A meta-command on a line of its own leaves no blank line behind.
            line_start = text.rfind("\n", 0, match.start()) + 1
            own_line = line_start >= pos and not text[line_start : match.start()].strip()
            state.emit(text[pos : line_start if own_line else match.start()])
            pos = _meta_command(text, match.end(), state)
            if own_line and text.startswith("\n", pos):
                pos += 1
            continue
        state.emit(text[pos : match.start()])
        if kind == "var":
            state.emit(_substitute(match.group(), state))
            pos = match.end()
        else:
            end = _skip_quoted(text, match)
            state.emit(text[match.start() : end])
            pos = end
    state.emit(text[pos:])
    if state.branches:
        raise ValueError("psql script ends inside \\if (missing \\endif)")
    return "".join(state.out)


def quote_literal(value: str) -> str:
    """``value`` as a SQL string literal, the way psql renders ``:'var'``."""
    _check_no_nul(value)
    quoted = value.replace("'", "''")
    if "\\" in quoted:
        return "E'" + quoted.replace("\\", "\\\\") + "'"
    return f"'{quoted}'"


def quote_ident(value: str) -> str:
    """``value`` as a SQL quoted identifier, the way psql renders ``:"var"``."""
    _check_no_nul(value)
    if not value:
        raise ValueError("an SQL identifier cannot be empty")
    return '"' + value.replace('"', '""') + '"'


@dataclass
class _Branch:
    parent_active: bool
    taken: bool  # some branch of this \if has already been selected
    active: bool
    seen_else: bool = False


@dataclass
class _State:
    variables: dict[str, str]
    branches: list[_Branch] = field(default_factory=list)
    out: list[str] = field(default_factory=list)

    @property
    def active(self) -> bool:
        return not self.branches or self.branches[-1].active

    def emit(self, chunk: str) -> None:
        if self.active:
            self.out.append(chunk)


def _check_no_nul(value: str) -> None:
    if "\x00" in value:
        raise ValueError("PostgreSQL text cannot contain NUL characters")


def _skip_quoted(text: str, match: re.Match[str]) -> int:
    """The end of the literal, identifier, dollar-quoted body or comment ``match`` opens."""
    kind, start, end = match.lastgroup, match.start(), match.end()
    if kind == "cast":
        return end
    if kind == "line_comment":
        newline = text.find("\n", end)
        return len(text) if newline < 0 else newline
    if kind == "block_comment":
        return _block_comment_end(text, end)
    if kind == "dollar":
        close = text.find(match.group(), end)
        if close < 0:
            raise ValueError(f"unterminated dollar-quoted string at offset {start}")
        return close + len(match.group())
    pattern = {"estring": _ESTRING_END, "string": _STRING_END, "ident": _IDENT_END}[kind or ""]
    closing = pattern.match(text, end)
    if closing is None:
        raise ValueError(f"unterminated quoted string or identifier at offset {start}")
    return closing.end()


def _block_comment_end(text: str, pos: int) -> int:
    depth = 1  # PostgreSQL block comments nest
    for part in _BLOCK_COMMENT_PART.finditer(text, pos):
        depth += 1 if part.group() == "/*" else -1
        if depth == 0:
            return part.end()
    raise ValueError(f"unterminated block comment at offset {pos - 2}")


def _substitute(token: str, state: _State) -> str:
    if not state.active:
        return token
    body = token[1:]
    if body.startswith("{?"):
        return "TRUE" if body[2:-1] in state.variables else "FALSE"
    if body[0] in "'\"":
        name = body[1:-1]
        if name not in state.variables:
            raise ValueError(f"psql variable {name!r} is not set")
        value = state.variables[name]
        return quote_literal(value) if body[0] == "'" else quote_ident(value)
    if body in state.variables:
        # psql would paste the raw value here; we only support the quoted forms.
        raise ValueError(f"unquoted psql variable :{body} is not supported; use :'{body}'")
    return token  # not a variable psql knows either (e.g. an array slice a[1:n])


def _meta_command(text: str, pos: int, state: _State) -> int:
    """Apply the meta-command starting after the backslash at ``pos``; return where SQL resumes."""
    newline = text.find("\n", pos)
    end = len(text) if newline < 0 else newline
    command, *rest = text[pos:end].split(maxsplit=1) or [""]
    handler = _META_COMMANDS.get(command)
    if handler is None:
        raise ValueError(f"psql meta-command \\{command} is not supported by render_psql_script")
    handler(state, rest[0] if rest else "")
    return end


def _meta_args(rest: str, state: _State) -> list[str]:
    args = []
    for token in _META_ARG.findall(rest):
        if token.startswith("'") and token.endswith("'") and len(token) >= 2:
            args.append(token[1:-1].replace("''", "'"))
        elif token.startswith(":{?") and token.endswith("}"):
            args.append("true" if token[3:-1] in state.variables else "false")
        elif token.startswith(":") and len(token) > 1:
            if token[1:] not in state.variables:
                raise ValueError(f"psql variable {token[1:]!r} is not set")
            args.append(state.variables[token[1:]])
        else:
            args.append(token)
    return args


def _condition(rest: str, state: _State) -> bool:
    args = _meta_args(rest, state)
    value = " ".join(args).strip().lower()
    if value not in _BOOLEANS:
        raise ValueError(f"psql \\if needs a boolean, got {value!r}")
    return _BOOLEANS[value]


def _if(state: _State, rest: str) -> None:
    parent = state.active
    chosen = parent and _condition(rest, state)
    state.branches.append(_Branch(parent_active=parent, taken=chosen, active=chosen))


def _elif(state: _State, rest: str) -> None:
    branch = _innermost(state, "elif")
    if branch.seen_else:
        raise ValueError("psql \\elif after \\else")
    chosen = branch.parent_active and not branch.taken and _condition(rest, state)
    branch.active = chosen
    branch.taken = branch.taken or chosen


def _else(state: _State, rest: str) -> None:
    branch = _innermost(state, "else")
    if branch.seen_else:
        raise ValueError("psql \\else after \\else")
    branch.seen_else = True
    branch.active = branch.parent_active and not branch.taken
    branch.taken = True


def _endif(state: _State, rest: str) -> None:
    _innermost(state, "endif")
    state.branches.pop()


def _set(state: _State, rest: str) -> None:
    if not state.active:
        return
    args = _meta_args(rest, state)
    if not args:
        raise ValueError("psql \\set without a variable name (listing variables) is not supported")
    state.variables[args[0]] = "".join(args[1:])


def _innermost(state: _State, command: str) -> _Branch:
    if not state.branches:
        raise ValueError(f"psql \\{command} without \\if")
    return state.branches[-1]


_META_COMMANDS = {"if": _if, "elif": _elif, "else": _else, "endif": _endif, "set": _set}
