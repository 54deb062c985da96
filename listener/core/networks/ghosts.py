"""Ghost Matrix IDs: ``@<username_template with the ghost ID>:<server>``.

mautrix-go formats a ghost's localpart as the bridge config's ``appservice.username_template``
applied to the *encoded* ghost ID (mautrix/go ``bridgev2/matrix/connector.go`` FormatGhostMXID /
ParseGhostMXID; the encoding is ``id/userid.go`` EncodeUserLocalpart / DecodeUserLocalpart, the
Matrix spec's "mapping from other character sets"). The default template is
``<network id>_{{.}}`` (``bridgev2/matrix/mxmain/example-config.yaml``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# The Go template placeholder; mautrix refuses a template without it (mautrix/go
# bridgev2/matrix/mxmain/main.go validateConfig: "username template is missing user ID …").
_PLACEHOLDER = re.compile(r"\{\{-?\s*\.\s*-?\}\}")
_KEPT = frozenset("-.+0123456789abcdefghijklmnopqrstuvwxyz")
_VALID = frozenset("_=-.+0123456789abcdefghijklmnopqrstuvwxyz")
_HEX = frozenset("0123456789abcdef")


def encode_localpart(ghost_id: str) -> str:
    """A ghost ID as mautrix puts it in a localpart: A-Z as ``_a``-``_z``, ``_`` as ``__``, every
    other byte outside ``a-z0-9-.+`` as ``=xx`` (lower-case hex of each UTF-8 byte)."""
    out: list[str] = []
    for byte in ghost_id.encode():
        char = chr(byte)
        if char in _KEPT:
            out.append(char)
        elif "A" <= char <= "Z":
            out.append("_" + char.lower())
        elif char == "_":
            out.append("__")
        else:
            out.append(f"={byte:02x}")
    return "".join(out)


def decode_localpart(localpart: str) -> str | None:
    """The ghost ID encoded in ``localpart``; None when it is not a valid encoding."""
    raw = bytearray()
    i = 0
    while i < len(localpart):
        char = localpart[i]
        if char not in _VALID:
            return None
        if char == "_":
            nxt = localpart[i + 1 : i + 2]
            if not nxt or nxt not in "_abcdefghijklmnopqrstuvwxyz":
                return None
            raw += b"_" if nxt == "_" else nxt.upper().encode()
            i += 2
        elif char == "=":
            pair = localpart[i + 1 : i + 3].lower()
            if len(pair) != 2 or not set(pair) <= _HEX:
                return None
            raw.append(int(pair, 16))
            i += 3
        else:
            raw += char.encode()
            i += 1
    try:
        return raw.decode()
    except UnicodeDecodeError:
        return None


@dataclass(frozen=True, slots=True)
class GhostTemplate:
    """``appservice.username_template`` split around its ``{{.}}``."""

    prefix: str
    suffix: str

    @classmethod
    def parse(cls, template: str) -> GhostTemplate:
        """Raise ValueError unless ``template`` holds exactly one ``{{.}}`` and nothing else Go
        would execute (we do not run Go templates)."""
        pieces = _PLACEHOLDER.split(template)
        if len(pieces) != 2:
            raise ValueError(f"ghost template {template!r} must contain {{{{.}}}} exactly once")
        if any("{{" in piece or "}}" in piece for piece in pieces):
            raise ValueError(f"ghost template {template!r} has template actions besides {{{{.}}}}")
        return cls(pieces[0], pieces[1])

    def localpart(self, ghost_id: str) -> str:
        return f"{self.prefix}{encode_localpart(ghost_id)}{self.suffix}"

    def mxid(self, ghost_id: str, server_name: str) -> str:
        return f"@{self.localpart(ghost_id)}:{server_name}"

    def ghost_id(self, mxid: str) -> str | None:
        """The ghost ID in ``mxid`` (``@localpart:server`` or a bare localpart), if this template
        made it; None for other users (the bridge bot, real Matrix users, another bridge)."""
        localpart = mxid.removeprefix("@").split(":", 1)[0]
        end = len(localpart) - len(self.suffix)
        if not (localpart.startswith(self.prefix) and localpart.endswith(self.suffix)):
            return None
        if end <= len(self.prefix):
            return None
        return decode_localpart(localpart[len(self.prefix) : end])
