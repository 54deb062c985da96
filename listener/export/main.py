"""Run an export: the archive pool (read only), the media source, the exporter."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx

from listener.core import errors
from listener.db import connect as pgconnect
from listener.export import media, run
from listener.export import reader as export_reader
from listener.viewer import reader
from listener.viewer import serve as viewer_serve


async def export(
    *,
    archive_url: str,
    options: run.Options,
    media_root: Path | None,
    storage: viewer_serve.SupabaseStorage | None,
    progress: Callable[[int, int], None] | None = None,
) -> run.Summary:
    pool = await pgconnect.create_pool(
        archive_url,
        application_name="archiver-db:export",
        max_size=2,
        error=errors.SinkError,
        read_only=True,
    )
    try:
        async with httpx.AsyncClient(timeout=httpx.Timeout(60.0, connect=10.0)) as client:
            if storage is not None and options.media != "none":
                placer = media.MediaPlacer(
                    options.media,
                    out=options.out,
                    client=client,
                    storage_base=storage.url.rstrip("/")
                    + f"/storage/v1/object/authenticated/{storage.bucket}/",
                    storage_key=storage.key,
                )
            else:
                placer = media.MediaPlacer(options.media, out=options.out, media_root=media_root)
            exporter = run.Exporter(
                reader.ArchiveReader(pool),
                export_reader.ExportReader(pool),
                placer,
                options,
                progress=progress,
            )
            return await exporter.run()
    finally:
        await pool.close()
