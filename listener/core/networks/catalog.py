"""Every known network profile by name, and the generic one for any other bridgev2 bridge."""

from __future__ import annotations

from listener.core.networks import gmessages, meta, profile, signal, slack, whatsapp

GENERIC = profile.GENERIC
PROFILES: dict[str, profile.NetworkProfile] = {
    p.name: p
    for p in (
        whatsapp.WHATSAPP,
        signal.SIGNAL,
        meta.META,
        gmessages.GMESSAGES,
        slack.SLACK,
        GENERIC,
    )
}


def get(name: str) -> profile.NetworkProfile:
    """The profile called ``name``; KeyError naming the known ones otherwise."""
    try:
        return PROFILES[name]
    except KeyError:
        known = ", ".join(PROFILES)
        raise KeyError(f"unknown network {name!r} (known: {known})") from None
