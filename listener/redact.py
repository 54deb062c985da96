"""Secret-free renderings of connection strings and URLs, for logs and error messages."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

_PASSWORD_PARAM = re.compile(r"(?i)(password|passwd|pwd|apikey|api_key|key|token)=([^&\s]+)")


def redact_url(url: str) -> str:
    """``url`` with any password (userinfo or query parameter) replaced by ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:***@{host}" if ":" in userinfo else f"{user}@{host}"
    query = _PASSWORD_PARAM.sub(r"\1=***", parts.query)
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact_text(text: str, secrets: list[str]) -> str:
    """``text`` with every non-empty secret in ``secrets`` replaced by ``***``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text
