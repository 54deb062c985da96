"""listener.schema.sqlfiles: finding shipped SQL and rendering our psql scripts for asyncpg."""

from __future__ import annotations

import pytest

from listener.schema import sqlfiles

DEFAULT_CHANNEL = "\\if :{?channel}\n\\else\n\\set channel archiver_db\n\\endif\n"


@pytest.mark.parametrize(
    ("script", "variables", "expected"),
    [
        pytest.param("SELECT 1;\n", {}, "SELECT 1;\n", id="plain-sql"),
        pytest.param("SELECT :'x';", {"x": "a"}, "SELECT 'a';", id="literal"),
        pytest.param("SELECT :'x';", {"x": "it's"}, "SELECT 'it''s';", id="literal-quote"),
        pytest.param("SELECT :'x';", {"x": "a\\b"}, "SELECT E'a\\\\b';", id="literal-backslash"),
        pytest.param("SELECT :'x';", {"x": ""}, "SELECT '';", id="literal-empty"),
        pytest.param('SELECT 1 AS :"x";', {"x": "Col"}, 'SELECT 1 AS "Col";', id="ident"),
        pytest.param('SELECT 1 AS :"x";', {"x": 'a"b'}, 'SELECT 1 AS "a""b";', id="ident-quote"),
        pytest.param("SELECT :{?x}, :{?y};", {"x": ""}, "SELECT TRUE, FALSE;", id="is-set"),
        pytest.param(
            DEFAULT_CHANNEL + "NOTIFY x, :'channel';",
            {},
            "NOTIFY x, 'archiver_db';",
            id="default-channel",
        ),
        pytest.param(
            DEFAULT_CHANNEL + "NOTIFY x, :'channel';",
            {"channel": "mine"},
            "NOTIFY x, 'mine';",
            id="given-channel",
        ),
        pytest.param(
            "\\if false\nA;\n\\elif true\nB;\n\\elif true\nC;\n\\else\nD;\n\\endif\n",
            {},
            "B;\n",
            id="elif-first-true-wins",
        ),
        pytest.param(
            "\\if off\n\\if on\nA;\n\\else\nB;\n\\endif\n\\else\nC;\n\\endif\n",
            {},
            "C;\n",
            id="nested-inactive",
        ),
        pytest.param(
            "\\if 0\n\\set x no\n\\bogus\n\\endif\nSELECT :'x';",
            {"x": "yes"},
            None,  # the inactive \bogus is still rejected, see below
            id="inactive-unknown-meta",
        ),
        pytest.param("\\set v 'a b' c\nSELECT :'v';", {}, "SELECT 'a bc';", id="set-concat"),
        pytest.param("\\set ON_ERROR_STOP on\nSELECT 1;", {}, "SELECT 1;", id="set-on-error-stop"),
        pytest.param("\\if\t:{?v}\nA;\n\\endif\n", {"v": "1"}, "A;\n", id="tab-separated"),
        pytest.param("SELECT '1'::int, a[1:n];", {}, "SELECT '1'::int, a[1:n];", id="cast-slice"),
        pytest.param(
            "SELECT ':''x''', \":'x'\", E'\\':x', $$ :'x' \\set $$, $t$ :'x' $t$; -- :'x' \\q",
            {"x": "v"},
            "SELECT ':''x''', \":'x'\", E'\\':x', $$ :'x' \\set $$, $t$ :'x' $t$; -- :'x' \\q",
            id="quoted-and-commented-untouched",
        ),
        pytest.param(
            "/* :'x' /* \\q */ :'x' */ SELECT :'x';",
            {"x": "v"},
            "/* :'x' /* \\q */ :'x' */ SELECT 'v';",
            id="nested-block-comment",
        ),
        pytest.param(
            "CREATE FUNCTION f() RETURNS int AS $body$\nBEGIN x := 1; END\n$body$;",
            {},
            "CREATE FUNCTION f() RETURNS int AS $body$\nBEGIN x := 1; END\n$body$;",
            id="plpgsql-body",
        ),
        pytest.param(
            "SELECT a$b$c, $1;", {"b": "x"}, "SELECT a$b$c, $1;", id="dollar-in-identifier"
        ),
    ],
)
def test_render_psql_script__renders_like_psql(
    script: str, variables: dict[str, str], expected: str | None
) -> None:
    if expected is None:
        with pytest.raises(ValueError, match="bogus"):
            sqlfiles.render_psql_script(script, variables)
    else:
        assert sqlfiles.render_psql_script(script, variables) == expected


@pytest.mark.parametrize(
    ("script", "variables", "message"),
    [
        pytest.param("SELECT 1 \\gset", {}, r"\\gset is not supported", id="gset"),
        pytest.param("\\i other.sql\n", {}, r"\\i is not supported", id="include"),
        pytest.param("\\connect db\n", {}, r"\\connect is not supported", id="connect"),
        pytest.param("\\set\n", {}, "without a variable name", id="set-listing"),
        pytest.param("SELECT :'nope';", {}, "'nope' is not set", id="undefined-literal"),
        pytest.param('SELECT :"nope";', {}, "'nope' is not set", id="undefined-ident"),
        pytest.param("SELECT :x;", {"x": "1"}, "unquoted", id="raw-variable"),
        pytest.param('SELECT :"x";', {"x": ""}, "cannot be empty", id="empty-ident"),
        pytest.param("SELECT :'x';", {"x": "a\x00"}, "NUL", id="nul"),
        pytest.param("\\if maybe\n\\endif\n", {}, "boolean", id="non-boolean-if"),
        pytest.param("\\if :nope\n\\endif\n", {}, "'nope' is not set", id="if-undefined"),
        pytest.param("\\if true\nSELECT 1;", {}, "missing", id="missing-endif"),
        pytest.param("\\endif\n", {}, "without", id="endif-without-if"),
        pytest.param("\\else\n", {}, "without", id="else-without-if"),
        pytest.param("\\if 1\n\\else\n\\else\n\\endif", {}, "after", id="else-twice"),
        pytest.param("\\if 1\n\\else\n\\elif 1\n\\endif", {}, "after", id="elif-after-else"),
        pytest.param("SELECT 'open", {}, "unterminated", id="open-string"),
        pytest.param('SELECT "open', {}, "unterminated", id="open-ident"),
        pytest.param("SELECT $x$ open", {}, "unterminated", id="open-dollar"),
        pytest.param("/* /* */ open", {}, "unterminated", id="open-comment"),
    ],
)
def test_render_psql_script__rejects_what_it_cannot_render_faithfully(
    script: str, variables: dict[str, str], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        sqlfiles.render_psql_script(script, variables)


@pytest.mark.parametrize(
    "name", ["triggers.sql", "uninstall_triggers.sql", "views.sql", "archive/0001_init.sql"]
)
def test_sql_path__finds_shipped_files_and_they_render(name: str) -> None:
    path = sqlfiles.sql_path(name)
    assert path.is_file()
    rendered = sqlfiles.render_psql_script(path.read_text(encoding="utf-8"), {})
    assert not [line for line in rendered.splitlines() if line.lstrip().startswith("\\")]


def test_sql_path__triggers_default_and_custom_channel() -> None:
    text = sqlfiles.sql_path("triggers.sql").read_text(encoding="utf-8")
    assert "notify_rowids('archiver_db')" in sqlfiles.render_psql_script(text, {})
    custom = sqlfiles.render_psql_script(text, {"channel": "x'y"})
    assert "notify_rowids('x''y')" in custom


@pytest.mark.parametrize("name", ["/etc/passwd", "../pyproject.toml", "archive/../../x", ""])
def test_sql_path__rejects_paths_outside_sql(name: str) -> None:
    with pytest.raises(ValueError, match="relative path"):
        sqlfiles.sql_path(name)


def test_sql_path__missing_file_is_file_not_found() -> None:
    with pytest.raises(FileNotFoundError, match=r"nope\.sql"):
        sqlfiles.sql_path("nope.sql")
