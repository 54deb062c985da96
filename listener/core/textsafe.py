"""Make JSON and text storable in PostgreSQL without losing anything.

PostgreSQL's ``text`` cannot hold NUL and ``jsonb`` rejects ``\\u0000`` and unpaired UTF-16
surrogates, all of which a Matrix event's JSON may legally carry. We store a sanitised copy
(each offending code point replaced by U+FFFD) where the archive needs jsonb, and alongside it
the exact original as ASCII-escaped JSON text, which PostgreSQL accepts as-is.
"""

from __future__ import annotations

import json
import re
from typing import Any

REPLACEMENT = "\ufffd"
_UNSAFE = re.compile("[\x00\ud800-\udfff]")


def safe_text(value: str) -> str:
    """``value`` with NUL and lone surrogates replaced, so PostgreSQL text accepts it."""
    return _UNSAFE.sub(REPLACEMENT, value)


def needs_sanitising(value: str) -> bool:
    return _UNSAFE.search(value) is not None


def sanitise_json(value: Any) -> tuple[Any, bool]:
    """A copy of ``value`` safe for jsonb, and whether anything had to change."""
    if isinstance(value, str):
        if needs_sanitising(value):
            return safe_text(value), True
        return value, False
    if isinstance(value, dict):
        changed = False
        out: dict[str, Any] = {}
        for key, item in value.items():
            new_key, key_changed = sanitise_json(key)
            new_item, item_changed = sanitise_json(item)
            out[new_key] = new_item
            changed = changed or key_changed or item_changed
        return out, changed
    if isinstance(value, list):
        pairs = [sanitise_json(item) for item in value]
        return [item for item, _ in pairs], any(changed for _, changed in pairs)
    return value, False


def dumps(value: Any) -> str:
    """Compact JSON for the database (UTF-8 kept as-is; the value must already be safe)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def storable_json(value: Any) -> tuple[str, str | None]:
    """``(jsonb_text, raw_or_None)``: raw is the lossless ASCII-escaped original when needed."""
    text = dumps(value)
    if "\\u0000" not in text and not needs_sanitising(text):
        # The common case: one serialisation and two scans, all in C. json.dumps writes NUL
        # as the escape \u0000 and keeps a lone surrogate as itself; anything that looks
        # like either (even an escaped backslash before "u0000") takes the careful path.
        return text, None
    safe, _changed = sanitise_json(value)
    return dumps(safe), json.dumps(value, ensure_ascii=True, separators=(",", ":"))
