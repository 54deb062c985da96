"""Media bytes in a Supabase Storage bucket, at the same content address as the local store.

:meth:`SupabaseBlobStore.ingest` stages the source into a local temporary file with the shared
single pass (:func:`blobstore.stage`: read, decrypt, hash, verify, fsync), then uploads it unless
the address is already stored: a single request (storage3, ``x-upsert: true``) up to
``tus_threshold_bytes``, the resumable TUS protocol (:mod:`listener.sinks.supabase.tus`) above,
streamed from the staged file a chunk at a time. Either way a retried upload is harmless: same
address, same bytes. The bucket is private and is created at start when absent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from storage3.exceptions import StorageApiError

from listener.core import errors
from listener.media import blobstore, encrypted_file
from listener.sinks.supabase import api as supabase_api
from listener.sinks.supabase import retry

logger = logging.getLogger(__name__)

DEFAULT_BUCKET = "archive-media"
TUS_THRESHOLD_BYTES = 6 * 1024 * 1024  # Supabase's limit for a standard upload request
CONTENT_TYPE = "application/octet-stream"


def _not_found(exc: BaseException) -> bool:
    """Storage answers "not found" as HTTP 400 with ``statusCode: "404"`` in the body."""
    if isinstance(exc, StorageApiError) and str(exc.status) == "404":
        return True
    response = retry.response_of(exc)
    return response is not None and response.status_code == 404


@contextlib.contextmanager
def _as_os_errors() -> Iterator[None]:
    """Sink errors as the OSError subclasses the BlobStore contract promises."""
    try:
        yield
    except errors.SinkUnavailable as exc:
        raise errors.BlobStoreUnavailable(str(exc)) from None
    except errors.RowRejected as exc:
        raise errors.BlobRejected(str(exc)) from None


class SupabaseBlobStore:
    """:class:`~listener.media.blobstore.BlobStore` on a private Supabase Storage bucket."""

    def __init__(
        self,
        api: supabase_api.SupabaseApi,
        *,
        bucket: str = DEFAULT_BUCKET,
        staging_dir: Path,
        tus_threshold_bytes: int = TUS_THRESHOLD_BYTES,
        chunk_bytes: int = blobstore.CHUNK_BYTES,
    ) -> None:
        self._api = api
        self.bucket = bucket
        self._staging = staging_dir
        self._tus_threshold = tus_threshold_bytes
        self._chunk_bytes = chunk_bytes
        self.uploads = {"standard": 0, "resumable": 0}
        self._opened = False
        self._opening = asyncio.Lock()

    async def open(self) -> None:
        """Create the staging folder and the (private) bucket when absent; once."""
        async with self._opening:
            if not self._opened:
                await self._open()
                self._opened = True

    async def _open(self) -> None:
        await asyncio.to_thread(self._staging.mkdir, parents=True, exist_ok=True)
        storage = self._api.client.storage

        async def ensure() -> None:
            try:
                await storage.get_bucket(self.bucket)
            except StorageApiError as exc:
                if not _not_found(exc):
                    raise
                try:
                    await storage.create_bucket(self.bucket, options={"public": False})
                except StorageApiError as create_exc:
                    if str(create_exc.status) != "409":  # created meanwhile: fine
                        raise
                logger.info("created bucket %s", self.bucket, extra={"action": "bucket_created"})

        await self._call(f"bucket {self.bucket}", ensure)

    async def _call(self, what: str, action: Any) -> Any:
        with _as_os_errors():
            return await self._api.caller.call(what, action)

    async def exists(self, key: str) -> bool:
        await self.open()
        bucket = self._api.client.storage.from_(self.bucket)

        async def info() -> bool:
            try:
                await bucket.info(key)
            except StorageApiError as exc:
                if _not_found(exc):
                    return False
                raise
            return True

        result: bool = await self._call(f"object info {key}", info)
        return result

    async def ingest(
        self,
        source: blobstore.Source,
        *,
        decrypt: encrypted_file.EncryptedFileInfo | None = None,
        expected_size: int | None = None,
        expected_source_sha256: str | None = None,
        slot: blobstore.Slot | None = None,
    ) -> blobstore.StoredBlob:
        await self.open()
        temp = self._staging / f"{uuid.uuid4().hex}.part"
        # The whole ingest holds the slot: the upload is the part that moves the bytes.
        async with slot or contextlib.nullcontext():
            # Staged without fsync: the temporary file is only read back for the upload,
            # and Storage's answer to that upload is what makes the bytes durable.
            staged = await blobstore.stage(
                source,
                temp,
                decrypt=decrypt,
                expected_size=expected_size,
                expected_source_sha256=expected_source_sha256,
                chunk_bytes=self._chunk_bytes,
            )
            try:
                key = blobstore.blob_key(staged.sha256)
                created = not await self.exists(key)
                if created:
                    await self._upload(staged.path, key, staged.size)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(temp)
        return blobstore.StoredBlob(key, staged.sha256, staged.size, staged.source_sha256, created)

    async def _upload(self, path: Path, key: str, size: int) -> None:
        if size > self._tus_threshold:
            self.uploads["resumable"] += 1
            tus = self._api.tus()
            with _as_os_errors():  # the TUS client retries each of its requests itself
                await tus.upload(
                    path, bucket=self.bucket, object_name=key, content_type=CONTENT_TYPE
                )
            return
        self.uploads["standard"] += 1
        bucket = self._api.client.storage.from_(self.bucket)
        options: Any = {"content-type": CONTENT_TYPE, "upsert": "true"}
        # A path, not bytes: storage3 opens it and httpx streams it into the multipart body.
        await self._call(f"upload {key}", lambda: bucket.upload(key, path, file_options=options))
