"""listener.core.redact: secret-free renderings of DSNs and URLs."""

from __future__ import annotations

import pytest

from listener.core import redact

PASSWORD = "s3cr3t-Passw0rd"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        pytest.param(
            f"postgresql://bridge:{PASSWORD}@db.internal:5432/whatsapp",
            "postgresql://bridge:***@db.internal:5432/whatsapp",
            id="userinfo",
        ),
        pytest.param(
            f"postgres://bridge:{PASSWORD}@db/whatsapp?sslmode=require",
            "postgres://bridge:***@db/whatsapp?sslmode=require",
            id="userinfo-with-query",
        ),
        pytest.param(
            "postgresql://bridge:p@ss@db/whatsapp",
            "postgresql://bridge:***@db/whatsapp",
            id="at-sign-in-password",
        ),
        pytest.param(
            "postgresql://bridge:p%40ss%23w@db/whatsapp",
            "postgresql://bridge:***@db/whatsapp",
            id="percent-encoded-password",
        ),
        pytest.param(
            f"postgresql://:{PASSWORD}@db/whatsapp", "postgresql://:***@db/whatsapp", id="no-user"
        ),
        pytest.param(
            f"postgresql://bridge:{PASSWORD}@[::1]:5432/whatsapp",
            "postgresql://bridge:***@[::1]:5432/whatsapp",
            id="ipv6-host",
        ),
        pytest.param(
            f"postgresql://bridge:{PASSWORD}@h1:5432,h2:5433/whatsapp",
            "postgresql://bridge:***@h1:5432,h2:5433/whatsapp",
            id="multi-host",
        ),
        pytest.param(
            f"postgresql://db/whatsapp?user=bridge&password={PASSWORD}&sslmode=require",
            "postgresql://db/whatsapp?user=bridge&password=***&sslmode=require",
            id="password-param",
        ),
        pytest.param(
            f"postgresql://db/whatsapp?PASSWORD={PASSWORD}",
            "postgresql://db/whatsapp?PASSWORD=***",
            id="password-param-upper",
        ),
        pytest.param(
            f"https://x.supabase.co/rest/v1?apikey={PASSWORD}&select=*",
            "https://x.supabase.co/rest/v1?apikey=***&select=*",
            id="apikey-param",
        ),
        pytest.param(
            f"https://h/p?token={PASSWORD}&key={PASSWORD}",
            "https://h/p?token=***&key=***",
            id="token-and-key-params",
        ),
        pytest.param(
            f"postgresql://u:{PASSWORD}@db/x?password={PASSWORD}",
            "postgresql://u:***@db/x?password=***",
            id="both-places",
        ),
    ],
)
def test_redact_url__removes_passwords(url: str, expected: str) -> None:
    redacted = redact.redact_url(url)

    assert redacted == expected
    assert PASSWORD not in redacted


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://bridge@db.internal:5432/whatsapp",
        "postgresql://db/whatsapp?sslmode=verify-full&application_name=archiver",
        "https://project.supabase.co",
    ],
)
def test_redact_url__leaves_secret_free_urls_unchanged(url: str) -> None:
    assert redact.redact_url(url) == url


def test_redact_url__unparseable_url_is_not_echoed() -> None:
    assert redact.redact_url(f"postgresql://u:{PASSWORD}@[::1/db") == "<unparseable url>"


@pytest.mark.parametrize("separator", ["#", "?", "/"])
def test_redact_url__password_with_unencoded_reserved_character_is_removed(
    separator: str,
) -> None:
    url = f"postgresql://bridge:ab{separator}{PASSWORD}@db.internal/whatsapp"

    redacted = redact.redact_url(url)

    assert PASSWORD not in redacted


@pytest.mark.parametrize(
    ("text", "secrets", "expected"),
    [
        (
            "connect to postgresql://u:pw@h/db failed",
            ["postgresql://u:pw@h/db"],
            "connect to *** failed",
        ),
        ("key=abc and again abc", ["abc"], "key=*** and again ***"),
        ("a b", ["a", "b"], "*** ***"),
        ("nothing secret here", ["hunter2"], "nothing secret here"),
        ("empty secrets are ignored", ["", ""], "empty secrets are ignored"),
        ("no secrets configured", [], "no secrets configured"),
    ],
)
def test_redact_text__replaces_every_secret(text: str, secrets: list[str], expected: str) -> None:
    assert redact.redact_text(text, secrets) == expected
