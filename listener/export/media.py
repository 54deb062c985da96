"""Media for an export: copied (and checked against its SHA-256), linked, or left out.

The source is the archive's content-addressed store only, found through the row's storage
path, which must be a content address (as the viewer demands); the target name is made by the
export (a content address, or WhatsApp's attachment name), never taken from event data.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from pathlib import Path
from typing import Any, Literal

import httpx

from listener.viewer import media_files

logger = logging.getLogger(__name__)

Mode = Literal["copy", "link", "none"]
CHUNK = 1024 * 1024


def _copy_checked(source: Path, target: Path, sha256: str | None) -> bool:
    """Copy ``source`` to ``target`` (through a temporary name); False when the bytes do not
    hash to ``sha256`` (the target is then not written)."""
    temporary = target.with_name(target.name + ".part")
    digest = hashlib.sha256()
    with source.open("rb") as reader, temporary.open("wb") as writer:
        while chunk := reader.read(CHUNK):
            digest.update(chunk)
            writer.write(chunk)
    if sha256 is not None and digest.hexdigest() != sha256:
        temporary.unlink()
        return False
    temporary.replace(target)
    return True


def _link(source: Path, target: Path) -> None:
    target.unlink(missing_ok=True)
    os.symlink(source, target)


class MediaPlacer:
    """Puts one archived file at a path inside the export, once."""

    def __init__(
        self,
        mode: Mode,
        *,
        out: Path,
        media_root: Path | None = None,
        client: httpx.AsyncClient | None = None,
        storage_base: str | None = None,
        storage_key: str | None = None,
    ) -> None:
        if mode == "link" and media_root is None:
            raise ValueError("--media link needs the local media store (MEDIA_ARCHIVE_PATH)")
        self.mode = mode
        self._out = out
        self._root = media_root.resolve() if media_root is not None else None
        self._client = client
        self._storage_base = storage_base
        key = storage_key or ""
        self._auth = {"apikey": key, "Authorization": f"Bearer {key}"}
        self.placed = 0
        self.failed = 0

    async def place(self, row: Any, relative: str) -> str | None:
        """``relative`` when the file is there now, else None (not stored, not exported)."""
        if self.mode == "none" or row["status"] != "stored" or not row["storage_path"]:
            return None
        key = media_files.safe_key(row["storage_path"])
        if key is None:
            self.failed += 1
            return None
        target = self._out / relative
        if target.is_symlink() or (
            target.exists() and target.stat().st_size == (row["size_bytes"] or 0)
        ):
            return relative  # an earlier run put it there
        target.parent.mkdir(parents=True, exist_ok=True)
        ok = await self._fetch(key, target, row["sha256"])
        if ok:
            self.placed += 1
            return relative
        self.failed += 1
        logger.warning(
            "media %s could not be exported (missing from the store or not matching its hash)",
            row["id"],
            extra={"action": "export_media_failed"},
        )
        return None

    async def _fetch(self, key: str, target: Path, sha256: str | None) -> bool:
        if self._root is not None:
            source = self._root.joinpath(*key.split("/"))
            if not source.is_file():
                return False
            if self.mode == "link":
                await asyncio.to_thread(_link, source, target)
                return True
            return await asyncio.to_thread(_copy_checked, source, target, sha256)
        assert self._client is not None
        assert self._storage_base is not None
        temporary = target.with_name(target.name + ".part")
        digest = hashlib.sha256()
        try:
            async with self._client.stream(
                "GET", self._storage_base + key, headers=self._auth
            ) as response:
                if response.status_code != 200:
                    return False
                with temporary.open("wb") as writer:
                    async for chunk in response.aiter_raw():
                        digest.update(chunk)
                        writer.write(chunk)
        except httpx.HTTPError:
            temporary.unlink(missing_ok=True)
            return False
        if sha256 is not None and digest.hexdigest() != sha256:
            temporary.unlink(missing_ok=True)
            return False
        temporary.replace(target)
        return True
