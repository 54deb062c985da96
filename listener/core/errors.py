"""The package's exception tree. Each class's docstring is its default message."""

from __future__ import annotations


class ArchiverError(Exception):
    """archiver-db failed."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (type(self).__doc__ or "").strip())


class ConfigError(ArchiverError):
    """A setting is missing or malformed."""


class PayloadError(ArchiverError):
    """A NOTIFY payload on our channel is not one of ours."""


class SourceError(ArchiverError):
    """A source database (bridge or Synapse) could not be read."""


class SinkError(ArchiverError):
    """The archive sink could not be written."""


class SinkUnavailable(SinkError):
    """The archive sink is unreachable; retrying later may succeed."""


class RowRejected(SinkError):
    """The archive sink rejected a record; retrying will not help."""


class SchemaError(ArchiverError):
    """A database does not have the schema archiver-db expects."""


class MalformedEvent(ArchiverError):
    """A Synapse event could not be parsed."""


class MediaError(ArchiverError):
    """A media item could not be archived."""


class MediaRejected(MediaError):
    """A media reference is not safe to resolve inside the media store; it is never opened."""


class EncryptedFileInvalid(MediaError):
    """An encrypted attachment (EncryptedFile) is malformed."""


class MediaIntegrityError(MediaError):
    """Media bytes do not match their expected size or SHA-256."""


class SinkAuthError(SinkUnavailable):
    """The archive sink refused our credentials (check SUPABASE_URL and SUPABASE_KEY)."""


class PayloadTooLarge(RowRejected):
    """The archive sink refused a request as too large; smaller requests may pass."""


# Also an OSError: the BlobStore contract reports I/O failures as OSError, so the media archiver
# records the item with this reason instead of crashing its copy worker.
class BlobStoreUnavailable(SinkUnavailable, OSError):
    """The remote blob store (Supabase Storage) is unreachable; retrying later may succeed."""


class BlobRejected(RowRejected, OSError):
    """The remote blob store (Supabase Storage) refused an object; retrying will not help."""
