"""What to do with one media reference, given what Synapse knows about it. Pure: no I/O.

The outcomes: record a final row now (:class:`Record`), copy the bytes (:class:`Copy`), or wait
for an async upload to finish (:class:`Wait`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import PurePosixPath

from listener.core import errors
from listener.media import encrypted_file, refs, source
from listener.sinks import media_protocol

OCTET_STREAM = "application/octet-stream"


@dataclass(frozen=True, slots=True)
class Item:
    """One media reference of one archived event, on its way through the archiver.

    ``allowed`` is false when DOWNLOAD_MEDIA or the room's ``archive_media`` says no.
    ``first_seen`` (monotonic seconds) is set while an async upload is awaited.
    """

    event_id: str
    room_id: str | None
    ref: refs.MediaRef
    allowed: bool = True
    skip_reason: str | None = None
    first_seen: float | None = None

    @property
    def key(self) -> media_protocol.MediaKey:
        return (self.event_id, self.mxc_url)

    @property
    def mxc_url(self) -> str:
        # Rejected URIs are stored too; PostgreSQL text cannot hold NUL.
        return self.ref.mxc.replace("\x00", "\ufffd")[: refs.MAX_MXC_LEN]


@dataclass(frozen=True, slots=True)
class Record:
    row: media_protocol.MediaRow


@dataclass(frozen=True, slots=True)
class Copy:
    item: Item
    row: media_protocol.MediaRow  # status pending, metadata filled in
    server: str
    media_id: str
    relative_path: PurePosixPath
    expected_size: int | None
    expected_source_sha256: str | None
    decrypt: encrypted_file.EncryptedFileInfo | None


@dataclass(frozen=True, slots=True)
class Wait:
    item: Item
    row: media_protocol.MediaRow  # status pending: the async upload has not finished


Action = Record | Copy | Wait


def base_row(item: Item, media: source.SynapseMedia | None = None) -> media_protocol.MediaRow:
    """The row from the event's ``info``, completed by Synapse's metadata where it has any."""
    ref, info = item.ref, item.ref.info
    encrypted = ref.encrypted is not None
    mimetype = info.mimetype
    filename = ref.filename
    if media is not None:
        # Encrypted uploads are octet-stream with no name in Synapse: trust only the event.
        if not mimetype and not encrypted and media.media_type != OCTET_STREAM:
            mimetype = media.media_type
        filename = filename or media.upload_name
    created = media.created_ts_ms if media is not None else None
    return media_protocol.MediaRow(
        event_id=item.event_id,
        mxc_url=item.mxc_url,
        kind=ref.kind,
        status="pending",
        room_id=item.room_id,
        original_filename=filename,
        mimetype=mimetype,
        size_bytes=media.media_length if media and media.media_length is not None else info.size,
        width=info.width,
        height=info.height,
        duration_ms=info.duration_ms,
        encrypted=encrypted or ref.invalid is not None,
        uploaded_at=datetime.fromtimestamp(created / 1000, tz=UTC) if created else None,
    )


def final(row: media_protocol.MediaRow, status: media_protocol.Status, reason: str) -> Record:
    return Record(dataclasses.replace(row, status=status, status_reason=reason))


def is_local(server: str, server_name: str | None, local_row: bool) -> bool:
    """With SYNAPSE_SERVER_NAME set, the name decides; without it, a local row does."""
    return server == server_name if server_name else local_row


def decide(
    item: Item,
    *,
    server_name: str | None,
    local: dict[str, source.SynapseMedia],
    remote: dict[tuple[str, str], source.SynapseMedia],
    archive_quarantined: bool,
) -> Action:
    """The action for ``item``; ``local``/``remote`` are the batch's Synapse metadata."""
    if item.ref.invalid is not None:
        return final(base_row(item), "rejected", f"invalid EncryptedFile: {item.ref.invalid}")
    try:
        server, media_id = refs.parse_mxc(item.ref.mxc)
    except errors.MediaRejected as exc:
        return final(base_row(item), "rejected", str(exc))
    if not item.allowed:
        return final(base_row(item), "skipped", item.skip_reason or "media archiving is off")
    if is_local(server, server_name, media_id in local):
        media = local.get(media_id)
        where = "local_media_repository"
    else:
        media = remote.get((server, media_id))
        where = "remote_media_cache"
    if media is None:
        return final(base_row(item), "missing", f"no {where} row for {item.ref.mxc}")
    return _decide_known(item, media, server, media_id, archive_quarantined)


def _decide_known(
    item: Item,
    media: source.SynapseMedia,
    server: str,
    media_id: str,
    archive_quarantined: bool,
) -> Action:
    row = base_row(item, media)
    if media.media_length is None:
        return Wait(item, dataclasses.replace(row, status_reason="async upload in progress"))
    if media.quarantined and not archive_quarantined:
        return final(row, "quarantined", "quarantined in Synapse; not copied")
    try:
        relative = media.relative_path
    except errors.MediaRejected as exc:
        return final(row, "rejected", str(exc))
    if media.quarantined:
        row = dataclasses.replace(row, status_reason="quarantined in Synapse; copied by setting")
    return Copy(
        item=item,
        row=row,
        server=server,
        media_id=media_id,
        relative_path=relative,
        expected_size=media.media_length,
        expected_source_sha256=media.sha256,
        decrypt=item.ref.encrypted,
    )


def server_lookups(
    items: list[Item], server_name: str | None
) -> tuple[set[str], set[tuple[str, str]]]:
    """Local media IDs and remote (origin, media ID) keys to look up for ``items``.

    Without a configured server name every valid mxc is looked up both ways (two queries
    per batch either way); :func:`is_local` then decides by the local row.
    """
    local: set[str] = set()
    remote: set[tuple[str, str]] = set()
    for item in items:
        if not item.allowed or item.ref.invalid is not None:
            continue
        try:
            server, media_id = refs.parse_mxc(item.ref.mxc)
        except errors.MediaRejected:
            continue
        if server_name is None or server == server_name:
            local.add(media_id)
        if server_name is None or server != server_name:
            remote.add((server, media_id))
    return local, remote
