"""The subset of Supabase Storage (storage-api) the archiver uses, on a temporary folder.

Sources (github.com/supabase/storage, src/http/routes and src/internal/errors):
- errors render as ``{"statusCode": "<real status>", "code", "error", "message"}`` with HTTP 400
  unless the real status is 500 (StorageBackendError.userStatusCode), e.g. NoSuchBucket and
  NoSuchKey (404), KeyAlreadyExists and BucketAlreadyExists (409), InvalidJWT (400);
- ``GET /bucket/{id}``, ``POST /bucket`` ({id, name, public}) → ``{"name": id}``;
- ``POST /object/{bucket}/{path}`` (multipart ``file`` field, or a raw body) creates,
  ``x-upsert: true`` overwrites, ``PUT`` updates → ``{"Key": "bucket/path", "Id": ...}``;
  ``GET /object/{bucket}/{path}`` (also ``/object/authenticated/``), ``HEAD`` the same,
  ``GET /object/info/{bucket}/{path}`` → the object's metadata;
- TUS at ``/upload/resumable`` (tus-node-server under storage-api; protocol at
  tus.io/protocols/resumable-upload): POST with ``Upload-Length`` and ``Upload-Metadata``
  (bucketName, objectName, contentType, cacheControl) → 201 + ``Location``; PATCH with
  ``Upload-Offset`` and ``Content-Type: application/offset+octet-stream`` → 204 + the new
  ``Upload-Offset`` (409 on a mismatch, 415 on another type); HEAD → ``Upload-Offset``,
  ``Upload-Length``; 404 for an unknown upload; the object appears when the last byte lands. A
  PATCH cut short keeps the bytes that arrived (tus core: "SHOULD accept and store as much as
  possible").
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from tests.supabase_stub.httpserver import Request, Response

TUS_PREFIX = "/storage/v1/upload/resumable"


def storage_error(status: int, code: str, message: str) -> Response:
    body = {"statusCode": str(status), "code": code, "error": code, "message": message}
    http_status = 500 if status == 500 else 400
    return Response(http_status, json.dumps(body).encode(), {"content-type": "application/json"})


def _json(status: int, value: object) -> Response:
    return Response(status, json.dumps(value).encode(), {"content-type": "application/json"})


@dataclass
class _TusUpload:
    bucket: str
    name: str
    length: int
    upsert: bool
    content_type: str
    path: Path
    offset: int = 0


@dataclass
class Storage:
    root: Path
    buckets: dict[str, dict[str, object]] = field(default_factory=dict)
    uploads: dict[str, _TusUpload] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    def object_path(self, bucket: str, name: str) -> Path:
        return self.root / "objects" / bucket / name

    def _count(self, what: str) -> None:
        self.counts[what] = self.counts.get(what, 0) + 1

    async def handle(self, request: Request, path: str) -> Response:
        parts = [p for p in path.split("/") if p]
        method = request.method
        if parts[:1] == ["bucket"]:
            return self._bucket(request, parts[1:])
        if parts[:2] == ["upload", "resumable"]:
            return self._tus(request, parts[2:])
        if parts[:2] == ["object", "info"] and method == "GET":
            return self._info(parts[2], "/".join(parts[3:]))
        if parts[:2] == ["object", "authenticated"] and method in ("GET", "HEAD"):
            return self._download(request, parts[2], "/".join(parts[3:]))
        if parts[:1] == ["object"] and len(parts) >= 3:
            bucket, name = parts[1], "/".join(parts[2:])
            if method in ("GET", "HEAD"):
                return self._download(request, bucket, name)
            if method in ("POST", "PUT"):
                return self._upload(request, bucket, name)
        return storage_error(404, "NotFound", f"Route {method}:{path} not found")

    # -- buckets -------------------------------------------------------------------------------

    def _bucket(self, request: Request, parts: list[str]) -> Response:
        if request.method == "GET" and len(parts) == 1:
            bucket = self.buckets.get(parts[0])
            if bucket is None:
                return storage_error(404, "NoSuchBucket", "Bucket not found")
            return _json(200, bucket)
        if request.method == "POST" and not parts:
            spec = json.loads(request.body or b"{}")
            bucket_id = str(spec.get("id") or spec.get("name"))
            if bucket_id in self.buckets:
                return storage_error(409, "BucketAlreadyExists", "The resource already exists")
            now = datetime.now(UTC).isoformat()
            self.buckets[bucket_id] = {
                "id": bucket_id, "name": spec.get("name") or bucket_id, "owner": "",
                "public": bool(spec.get("public", False)),
                "file_size_limit": spec.get("file_size_limit"),
                "allowed_mime_types": spec.get("allowed_mime_types"),
                "created_at": now, "updated_at": now,
            }  # fmt: skip
            (self.root / "objects" / bucket_id).mkdir(parents=True, exist_ok=True)
            return _json(200, {"name": bucket_id})
        return storage_error(404, "NotFound", "Route not found")

    # -- objects -------------------------------------------------------------------------------

    def _file_field(self, request: Request) -> tuple[bytes, str]:
        """The ``file`` part of a multipart/form-data body (as storage3 sends it), or the body."""
        content_type = request.headers.get("content-type", "application/octet-stream")
        if not content_type.startswith("multipart/form-data"):
            return request.body, content_type
        boundary = content_type.partition("boundary=")[2].strip('"').encode()
        for part in request.body.split(b"--" + boundary)[1:-1]:
            head, _, data = part.removeprefix(b"\r\n").partition(b"\r\n\r\n")
            lines = head.decode("latin-1").lower().split("\r\n")
            if any(
                'name="file"' in line for line in lines if line.startswith("content-disposition")
            ):
                kind = next(
                    (
                        line.split(":", 1)[1].strip()
                        for line in lines
                        if line.startswith("content-type")
                    ),
                    "",
                )
                return data.removesuffix(b"\r\n"), kind or "application/octet-stream"
        raise ValueError("no file field")

    def _upload(self, request: Request, bucket: str, name: str) -> Response:
        if bucket not in self.buckets:
            return storage_error(404, "NoSuchBucket", "Bucket not found")
        target = self.object_path(bucket, name)
        upsert = request.headers.get("x-upsert", "false").lower() == "true"
        if request.method == "POST" and target.exists() and not upsert:
            return storage_error(409, "KeyAlreadyExists", "The resource already exists")
        if request.method == "PUT" and not target.exists():
            return storage_error(404, "NoSuchKey", "Object not found")
        try:
            data, content_type = self._file_field(request)
        except ValueError:
            return storage_error(400, "InvalidRequest", "No content provided")
        self._write(target, data, content_type)
        self._count("standard_uploads")
        return _json(200, {"Key": f"{bucket}/{name}", "Id": str(uuid.uuid4())})

    def _write(self, target: Path, data: bytes, content_type: str) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        temp = target.with_name(target.name + ".tmp")
        temp.write_bytes(data)
        temp.replace(target)
        target.with_name(target.name + ".type").write_text(content_type)

    def _download(self, request: Request, bucket: str, name: str) -> Response:
        target = self.object_path(bucket, name)
        if bucket not in self.buckets or not target.is_file():
            return storage_error(404, "NoSuchKey", "Object not found")
        data = target.read_bytes()
        headers = {"content-type": "application/octet-stream", "etag": _etag(data)}
        if request.method == "HEAD":
            headers["content-length"] = str(len(data))
            return Response(200, b"", headers)
        return Response(200, data, headers)

    def _info(self, bucket: str, name: str) -> Response:
        target = self.object_path(bucket, name)
        if bucket not in self.buckets or not target.is_file():
            return storage_error(404, "NoSuchKey", "Object not found")
        stat = target.stat()
        modified = datetime.fromtimestamp(stat.st_mtime, UTC).isoformat()
        return _json(
            200,
            {
                "id": hashlib.md5(f"{bucket}/{name}".encode()).hexdigest(), "name": name,
                "version": "1", "bucket_id": bucket, "size": stat.st_size,
                "content_type": "application/octet-stream", "cache_control": "max-age=3600",
                "etag": _etag(target.read_bytes()), "metadata": {}, "created_at": modified,
                "last_modified": modified,
            },
        )  # fmt: skip

    # -- TUS -----------------------------------------------------------------------------------

    def _tus(self, request: Request, parts: list[str]) -> Response:
        headers = {"tus-resumable": "1.0.0"}
        if request.method == "OPTIONS":
            headers.update({"tus-version": "1.0.0", "tus-extension": "creation"})
            return Response(204, b"", headers)
        if request.headers.get("tus-resumable") != "1.0.0":
            return Response(412, b"Unsupported TUS version", {"tus-version": "1.0.0"})
        if request.method == "POST" and not parts:
            return self._tus_create(request, headers)
        upload = self.uploads.get(parts[0]) if len(parts) == 1 else None
        if upload is None:
            return Response(404, b"Upload not found", headers)
        if request.method == "HEAD":
            headers["upload-offset"] = str(upload.offset)
            headers["upload-length"] = str(upload.length)
            headers["cache-control"] = "no-store"
            return Response(200, b"", headers)
        if request.method == "PATCH":
            return self._tus_patch(request, parts[0], upload, headers)
        return Response(405, b"", headers)

    def _tus_create(self, request: Request, headers: dict[str, str]) -> Response:
        meta = {}
        for item in request.headers.get("upload-metadata", "").split(","):
            key, _, value = item.strip().partition(" ")
            if key:
                meta[key] = base64.b64decode(value).decode() if value else ""
        bucket, name = meta.get("bucketName"), meta.get("objectName")
        length = request.headers.get("upload-length")
        if not bucket or not name or length is None or not length.isdigit():
            return Response(400, b"Upload-Length and Upload-Metadata are required", headers)
        if bucket not in self.buckets:
            return storage_error(404, "NoSuchBucket", "Bucket not found")
        upsert = request.headers.get("x-upsert", "false").lower() == "true"
        if self.object_path(bucket, name).exists() and not upsert:
            return Response(409, b"The resource already exists", headers)
        upload_id = base64.urlsafe_b64encode(f"{bucket}/{name}/{uuid.uuid4()}".encode()).decode()
        part = self.root / "tus" / upload_id
        part.parent.mkdir(parents=True, exist_ok=True)
        part.write_bytes(b"")
        self.uploads[upload_id] = _TusUpload(
            bucket, name, int(length), upsert, meta.get("contentType", ""), part
        )
        self._count("tus_creates")
        headers["location"] = (
            f"{request.headers.get('x-forwarded-prefix', '')}{TUS_PREFIX}/{upload_id}"
        )
        return Response(201, b"", headers)

    def _tus_patch(
        self, request: Request, upload_id: str, upload: _TusUpload, headers: dict[str, str]
    ) -> Response:
        if request.headers.get("content-type") != "application/offset+octet-stream":
            return Response(415, b"Unsupported Media Type", headers)
        if request.headers.get("upload-offset") != str(upload.offset):
            return Response(409, b"Upload-Offset does not match", headers)
        if upload.offset + len(request.body) > upload.length:
            return Response(413, b"Upload exceeds its Upload-Length", headers)
        self.append(upload, request.body)
        self._count("tus_patches")
        headers["upload-offset"] = str(upload.offset)
        return Response(204, b"", headers)

    def append(self, upload: _TusUpload, data: bytes) -> None:
        with upload.path.open("ab") as out:
            out.write(data)
        upload.offset += len(data)
        if upload.offset == upload.length:
            target = self.object_path(upload.bucket, upload.name)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(upload.path, target)
            target.with_name(target.name + ".type").write_text(upload.content_type)

    async def partial(self, request: Request, data: bytes) -> None:
        """Keep what arrived of a PATCH whose connection dropped."""
        path = request.path.removeprefix(TUS_PREFIX).strip("/")
        upload = self.uploads.get(path)
        offset = request.headers.get("upload-offset")
        if request.method == "PATCH" and upload is not None and offset == str(upload.offset):
            self.append(upload, data)
            self._count("tus_partial_patches")


def _etag(data: bytes) -> str:
    return '"' + hashlib.md5(data).hexdigest() + '"'
