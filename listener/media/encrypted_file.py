"""Encrypted attachments (Matrix ``EncryptedFile``): validation and a streaming decryptor.

The bridge encrypts media for encrypted rooms itself (AES-256-CTR, mautrix-go
``crypto/attachment``) and uploads the ciphertext; the key, the initial counter block and the
SHA-256 of the *ciphertext* travel in the event (``content.file``, ``info.thumbnail_file``).
Pure apart from the cipher: no I/O, no clock.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from listener.core import errors

KEY_BYTES = 32
IV_BYTES = 16
SHA256_BYTES = 32


@dataclass(frozen=True, slots=True)
class EncryptedFileInfo:
    """A validated ``EncryptedFile``: where the ciphertext is and how to decrypt it."""

    url: str
    key: bytes = field(repr=False)  # never in a log line
    iv: bytes
    ciphertext_sha256: bytes

    @property
    def ciphertext_sha256_hex(self) -> str:
        return self.ciphertext_sha256.hex()


def parse_encrypted_file(value: object) -> EncryptedFileInfo:
    """Validate an ``EncryptedFile`` object; raise EncryptedFileInvalid naming what is wrong."""
    if not isinstance(value, Mapping):
        raise errors.EncryptedFileInvalid("EncryptedFile is not an object")
    if value.get("v") != "v2":
        raise errors.EncryptedFileInvalid(f"EncryptedFile version {value.get('v')!r} is not 'v2'")
    url = value.get("url")
    if not isinstance(url, str) or not url:
        raise errors.EncryptedFileInvalid("EncryptedFile has no url")
    key = _jwk_key(value.get("key"))
    iv = _decode(value.get("iv"), "iv", IV_BYTES, urlsafe=False)
    hashes = value.get("hashes")
    if not isinstance(hashes, Mapping) or "sha256" not in hashes:
        raise errors.EncryptedFileInvalid("EncryptedFile has no hashes.sha256")
    digest = _decode(hashes.get("sha256"), "hashes.sha256", SHA256_BYTES, urlsafe=False)
    return EncryptedFileInfo(url=url, key=key, iv=iv, ciphertext_sha256=digest)


def _jwk_key(jwk: object) -> bytes:
    if not isinstance(jwk, Mapping):
        raise errors.EncryptedFileInvalid("EncryptedFile key is not a JWK object")
    if jwk.get("kty") != "oct":
        raise errors.EncryptedFileInvalid(f"JWK kty {jwk.get('kty')!r} is not 'oct'")
    if jwk.get("alg") != "A256CTR":
        raise errors.EncryptedFileInvalid(f"JWK alg {jwk.get('alg')!r} is not 'A256CTR'")
    key_ops = jwk.get("key_ops")
    if key_ops is not None and (not isinstance(key_ops, list) or "decrypt" not in key_ops):
        raise errors.EncryptedFileInvalid("JWK key_ops does not allow 'decrypt'")
    if jwk.get("ext", True) is not True:
        raise errors.EncryptedFileInvalid("JWK ext must be true")
    return _decode(jwk.get("k"), "JWK k", KEY_BYTES, urlsafe=True)


def _decode(value: Any, name: str, length: int, *, urlsafe: bool) -> bytes:
    """Unpadded base64 (the spec's form); padded input is accepted too."""
    if not isinstance(value, str) or not value:
        raise errors.EncryptedFileInvalid(f"{name} is missing or not a string")
    text = value.rstrip("=")
    text += "=" * (-len(text) % 4)
    if urlsafe:
        text = text.replace("-", "+").replace("_", "/")
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise errors.EncryptedFileInvalid(f"{name} is not valid base64") from None
    if len(raw) != length:
        raise errors.EncryptedFileInvalid(f"{name} is {len(raw)} bytes, expected {length}")
    return raw


class Decryptor:
    """AES-256-CTR over a stream of ciphertext chunks, hashing the ciphertext as it goes.

    Call :meth:`update` per chunk (plaintext out, same length), then :meth:`verify` before the
    plaintext is accepted anywhere: a mismatch raises MediaIntegrityError.
    """

    def __init__(self, info: EncryptedFileInfo) -> None:
        self._info = info
        self._cipher = Cipher(algorithms.AES(info.key), modes.CTR(info.iv)).decryptor()
        self._hash = hashlib.sha256()

    def update(self, chunk: bytes) -> bytes:
        self._hash.update(chunk)
        return self._cipher.update(chunk)

    def hexdigest(self) -> str:
        """SHA-256 (hex) of the ciphertext seen so far."""
        return self._hash.hexdigest()

    def verify(self) -> None:
        tail = self._cipher.finalize()
        assert not tail, "CTR mode has no padding"
        actual = self._hash.digest()
        if not hmac.compare_digest(actual, self._info.ciphertext_sha256):
            raise errors.MediaIntegrityError(
                "encrypted attachment hash mismatch: ciphertext sha256 "
                f"{actual.hex()} != {self._info.ciphertext_sha256_hex} from the event"
            )
