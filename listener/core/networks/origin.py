"""Which bridge and network an archived message came from, written on every archive row.

The enrichment step carries the bridge row's ids (``message.id``, ``portal.id``, ``ghost.id``)
in the record's ``whatsapp_*`` fields, the archive's first columns for them (the seed design's
schema). At the sink boundary :meth:`Origin.label` copies them into the network-neutral
``network_*`` fields, names the bridge and the network, and keeps the ``whatsapp_*`` columns
filled for WhatsApp only, where they keep their meaning. Pure.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from listener.core import models
from listener.core.networks import catalog, profile


@dataclass(frozen=True, slots=True)
class Origin:
    bridge: str  # the configured bridge name: the archive's ``bridge`` column
    profile: profile.NetworkProfile

    @property
    def network(self) -> str:
        return self.profile.name

    def label(self, message: models.ArchivedMessage) -> models.ArchivedMessage:
        """The record with its origin (once: a labelled record is returned as it is)."""
        if message.bridge is not None:
            return message
        whatsapp = self.profile.fills_whatsapp_columns
        return dataclasses.replace(
            message,
            bridge=self.bridge,
            network=self.profile.name,
            network_message_id=message.whatsapp_message_id,
            network_chat_id=message.whatsapp_chat_id,
            network_sender_id=message.whatsapp_sender_id,
            whatsapp_message_id=message.whatsapp_message_id if whatsapp else None,
            whatsapp_chat_id=message.whatsapp_chat_id if whatsapp else None,
            whatsapp_sender_id=message.whatsapp_sender_id if whatsapp else None,
        )

    def label_batch(self, batch: models.ArchiveBatch) -> models.ArchiveBatch:
        if not batch.messages:
            return batch
        return dataclasses.replace(batch, messages=[self.label(m) for m in batch.messages])


def for_bridge(bridge: str, network: str | None) -> Origin:
    """The origin of a bridge whose network was configured or detected (``None``: WhatsApp,
    the only network before bridges were named; a name no profile has: the generic one)."""
    name = network or "whatsapp"
    found = catalog.PROFILES.get(name, catalog.GENERIC)
    return Origin(bridge, found)


WHATSAPP = for_bridge("whatsapp", "whatsapp")
