"""EncryptedFile validation and the streaming decryptor, against cryptography directly."""

from __future__ import annotations

import base64
import copy
import hashlib
import os
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from listener.core import errors
from listener.media import encrypted_file


def _b64(raw: bytes, *, urlsafe: bool = False) -> str:
    encode = base64.urlsafe_b64encode if urlsafe else base64.b64encode
    return encode(raw).decode().rstrip("=")


def encrypt(plaintext: bytes) -> tuple[bytes, dict[str, Any]]:
    """What mautrix-go's attachment.NewEncryptedFile produces (AES-256-CTR, v2)."""
    key, iv = os.urandom(32), os.urandom(8) + b"\0" * 8
    encryptor = Cipher(algorithms.AES(key), modes.CTR(iv)).encryptor()
    ciphertext = encryptor.update(plaintext) + encryptor.finalize()
    return ciphertext, {
        "v": "v2",
        "url": "mxc://example.org/abcdefghijklmnopqrstuvwx",
        "key": {
            "kty": "oct",
            "alg": "A256CTR",
            "ext": True,
            "key_ops": ["encrypt", "decrypt"],
            "k": _b64(key, urlsafe=True),
        },
        "iv": _b64(iv),
        "hashes": {"sha256": _b64(hashlib.sha256(ciphertext).digest())},
    }


def _decrypt_in_chunks(ciphertext: bytes, file: dict[str, Any], chunk: int) -> bytes:
    decryptor = encrypted_file.Decryptor(encrypted_file.parse_encrypted_file(file))
    out = b"".join(
        decryptor.update(ciphertext[i : i + chunk]) for i in range(0, len(ciphertext), chunk)
    )
    decryptor.verify()
    return out


@pytest.mark.parametrize("size", [0, 1, 15, 16, 17, 100_000])
@pytest.mark.parametrize("chunk", [1, 7, 4096])
def test_decryptor__round_trips_in_any_chunking(size: int, chunk: int) -> None:
    plaintext = os.urandom(size)
    ciphertext, file = encrypt(plaintext)
    assert _decrypt_in_chunks(ciphertext, file, chunk) == plaintext


def test_decryptor__tampered_ciphertext_fails_verification() -> None:
    ciphertext, file = encrypt(b"hello world" * 100)
    tampered = bytes([ciphertext[0] ^ 1]) + ciphertext[1:]
    with pytest.raises(errors.MediaIntegrityError, match="hash mismatch"):
        _decrypt_in_chunks(tampered, file, 64)


def test_parse__accepts_padded_base64_too() -> None:
    _, file = encrypt(b"x")
    file["iv"] += "=" * (-len(file["iv"]) % 4)
    file["key"]["k"] += "=" * (-len(file["key"]["k"]) % 4)
    info = encrypted_file.parse_encrypted_file(file)
    assert len(info.key) == 32
    assert len(info.iv) == 16


def _mutate(path: str, value: object) -> dict[str, Any]:
    _, file = encrypt(b"x")
    out = copy.deepcopy(file)
    target = out
    *parents, last = path.split(".")
    for part in parents:
        target = target[part]
    if value is KeyError:
        del target[last]
    else:
        target[last] = value
    return out


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("v", "v1", "version"),
        ("v", KeyError, "version"),
        ("url", KeyError, "no url"),
        ("key", "notajwk", "JWK"),
        ("key.kty", "RSA", "kty"),
        ("key.alg", "A128CTR", "alg"),
        ("key.key_ops", ["encrypt"], "key_ops"),
        ("key.ext", False, "ext"),
        ("key.k", _b64(b"\1" * 16, urlsafe=True), "16 bytes, expected 32"),
        ("key.k", "!!!!", "base64"),
        ("key.k", KeyError, "JWK k"),
        ("iv", _b64(b"\1" * 12), "12 bytes, expected 16"),
        ("iv", 12, "iv"),
        ("hashes", {}, "hashes.sha256"),
        ("hashes.sha256", _b64(b"\1" * 20), "20 bytes, expected 32"),
    ],
)
def test_parse__rejects_malformed_fields_with_a_clear_error(
    path: str, value: object, message: str
) -> None:
    with pytest.raises(errors.EncryptedFileInvalid, match=message):
        encrypted_file.parse_encrypted_file(_mutate(path, value))


def test_parse__rejects_non_objects() -> None:
    with pytest.raises(errors.EncryptedFileInvalid):
        encrypted_file.parse_encrypted_file(["not", "an", "object"])
