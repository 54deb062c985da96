"""Secret-free renderings of connection strings and URLs, for logs and error messages."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

_PASSWORD_PARAM = re.compile(r"(?i)(password|passwd|pwd|apikey|api_key|key|token)=([^&\s]+)")


def _scrub_userinfo(url: str) -> str:
    """Mask the password before any URL parsing: a password with an unencoded ``#``, ``?`` or
    ``/`` would end a parser's authority early and hide the ``@`` from it."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    userinfo, _, host = rest.rpartition("@")
    user, colon, _password = userinfo.partition(":")
    return f"{scheme}://{user}:***@{host}" if colon else url


def redact_url(url: str) -> str:
    """``url`` with any password (userinfo or query parameter) replaced by ``***``."""
    url = _scrub_userinfo(url)
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    query = _PASSWORD_PARAM.sub(r"\1=***", parts.query)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


def redact_text(text: str, secrets: list[str]) -> str:
    """``text`` with every non-empty secret in ``secrets`` replaced by ``***``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text
