"""Media detection, strict mxc parsing and Synapse's media_store path rules (pure)."""

from __future__ import annotations

import base64
import os
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from listener.core import errors
from listener.media import refs

MXC = "mxc://example.org/GpYsrMfaGNOcjyzbKLKolcqE"
THUMB = "mxc://example.org/ThUmBsrMfaGNOcjyzbKLKolc"


def _b64(raw: bytes, *, urlsafe: bool = False) -> str:
    encode = base64.urlsafe_b64encode if urlsafe else base64.b64encode
    return encode(raw).decode().rstrip("=")


def encrypted_file(url: str) -> dict[str, Any]:
    return {
        "v": "v2",
        "url": url,
        "key": {
            "kty": "oct",
            "alg": "A256CTR",
            "ext": True,
            "key_ops": ["encrypt", "decrypt"],
            "k": _b64(os.urandom(32), urlsafe=True),
        },
        "iv": _b64(os.urandom(8) + b"\0" * 8),
        "hashes": {"sha256": _b64(os.urandom(32))},
    }


@pytest.mark.parametrize(
    ("event_type", "msgtype", "kind"),
    [
        ("m.room.message", "m.image", "image"),
        ("m.room.message", "m.video", "video"),
        ("m.room.message", "m.audio", "audio"),
        ("m.room.message", "m.file", "file"),
        ("m.sticker", None, "sticker"),
    ],
)
def test_find_media__detects_every_kind_with_its_info(
    event_type: str, msgtype: str | None, kind: str
) -> None:
    content: dict[str, Any] = {
        "body": "caption",
        "filename": "IMG-1.png",
        "url": MXC,
        "info": {"mimetype": "image/png", "size": 1948, "w": 640, "h": 480, "duration": 4000},
    }
    if msgtype:
        content["msgtype"] = msgtype
    [ref] = refs.find_media(event_type, content)
    assert (ref.mxc, ref.kind, ref.filename, ref.is_thumbnail) == (MXC, kind, "IMG-1.png", False)
    assert ref.info == refs.MediaInfo("image/png", 1948, 640, 480, 4000)
    assert ref.encrypted is None


def test_find_media__voice_note_is_audio_with_msc1767_duration() -> None:
    content = {
        "msgtype": "m.audio",
        "body": "",
        "filename": "voice.ogg",
        "url": MXC,
        "info": {"mimetype": "audio/ogg", "size": 900},
        "org.matrix.msc3245.voice": {},
        "org.matrix.msc1767.audio": {"duration": 12000, "waveform": []},
    }
    [ref] = refs.find_media("m.room.message", content)
    assert (ref.kind, ref.voice, ref.info.duration_ms) == ("audio", True, 12000)


def test_find_media__thumbnail_url_and_thumbnail_file_are_their_own_refs() -> None:
    content = {
        "msgtype": "m.video",
        "body": "clip.mp4",
        "url": MXC,
        "info": {
            "mimetype": "video/mp4",
            "thumbnail_url": THUMB,
            "thumbnail_info": {"mimetype": "image/jpeg", "size": 300, "w": 32, "h": 24},
        },
    }
    main, thumb = refs.find_media("m.room.message", content)
    assert main.kind == "video"
    assert main.filename == "clip.mp4"
    assert (thumb.mxc, thumb.kind, thumb.is_thumbnail) == (THUMB, "thumbnail", True)
    assert thumb.info == refs.MediaInfo("image/jpeg", 300, 32, 24, None)


def test_find_media__encrypted_file_and_thumbnail_file() -> None:
    content = {
        "msgtype": "m.image",
        "body": "",
        "file": encrypted_file(MXC),
        "info": {"mimetype": "image/jpeg", "thumbnail_file": encrypted_file(THUMB)},
    }
    main, thumb = refs.find_media("m.room.message", content)
    assert main.mxc == MXC
    assert main.encrypted is not None
    assert len(main.encrypted.key) == 32
    assert thumb.mxc == THUMB
    assert thumb.encrypted is not None
    assert thumb.is_thumbnail
    assert "k=" not in repr(main.encrypted)
    assert "key=" not in repr(main.encrypted)


def test_find_media__malformed_encrypted_file_is_kept_with_its_reason() -> None:
    bad = encrypted_file(MXC)
    bad["key"]["alg"] = "A128CTR"
    [ref] = refs.find_media("m.room.message", {"msgtype": "m.file", "file": bad})
    assert ref.mxc == MXC
    assert ref.encrypted is None
    assert ref.invalid is not None
    assert "A256CTR" in ref.invalid


def test_find_media__looks_inside_m_new_content_and_dedupes() -> None:
    new_mxc = "mxc://example.org/NeWsrMfaGNOcjyzbKLKolcqE"
    content = {
        "msgtype": "m.image",
        "body": "* pic",
        "url": new_mxc,
        "m.new_content": {"msgtype": "m.image", "body": "pic", "url": new_mxc},
        "m.relates_to": {"rel_type": "m.replace", "event_id": "$orig"},
    }
    assert [r.mxc for r in refs.find_media("m.room.message", content)] == [new_mxc]
    only_new = {
        "msgtype": "m.text",
        "body": "* x",
        "m.new_content": {"msgtype": "m.file", "url": MXC},
    }
    assert [r.kind for r in refs.find_media("m.room.message", only_new)] == ["file"]


@pytest.mark.parametrize(
    ("event_type", "content"),
    [
        ("m.room.message", {"msgtype": "m.text", "body": "hi"}),
        ("m.room.message", {"msgtype": "m.image", "body": "no url"}),
        ("m.room.message", {"msgtype": "m.image", "url": 42}),
        ("m.room.encrypted", {"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "…"}),
        ("m.reaction", {"url": MXC}),
        ("m.room.message", {}),
    ],
)
def test_find_media__finds_nothing_where_there_is_no_media(
    event_type: str, content: dict[str, Any]
) -> None:
    assert refs.find_media(event_type, content) == []


@pytest.mark.parametrize(
    ("info", "expected"),
    [
        ({"size": True, "w": -1, "h": 1.5, "duration": "10"}, refs.MediaInfo()),
        ({"size": 2.0, "w": 2**40}, refs.MediaInfo(size=2)),
        ({"mimetype": "image/png\x00x"}, refs.MediaInfo(mimetype="image/png\ufffdx")),
    ],
)
def test_find_media__untrusted_info_values_are_sanitised(
    info: dict[str, Any], expected: refs.MediaInfo
) -> None:
    [ref] = refs.find_media("m.room.message", {"msgtype": "m.file", "url": MXC, "info": info})
    assert ref.info == expected


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        (MXC, ("example.org", "GpYsrMfaGNOcjyzbKLKolcqE")),
        ("mxc://localhost:8448/abc_DEF-123", ("localhost:8448", "abc_DEF-123")),
        ("mxc://1.2.3.4/abcde", ("1.2.3.4", "abcde")),
        ("mxc://[::1]:8448/abcde", ("[::1]:8448", "abcde")),
    ],
)
def test_parse_mxc__accepts_valid_uris(uri: str, expected: tuple[str, str]) -> None:
    assert refs.parse_mxc(uri) == expected


@pytest.mark.parametrize(
    "uri",
    [
        "mxc://../GpYsrMfaGNOcjyzbKLKolcqE",
        "mxc://./GpYsrMfaGNOcjyzbKLKolcqE",
        "mxc://example.org/../../etc/passwd",
        "mxc://example.org/..",
        "mxc://example.org/a/b",
        "mxc://example.org/abc%2F..",
        "mxc://example.org/abc\x00def",
        "mxc://exa\x00mple.org/abcdef",
        "mxc://example.org//etc/passwd",
        "mxc:///etc/passwd",
        "mxc://example.org/",
        "mxc://example.org",
        "mxc://example.org/abc def",
        "mxc://example.org/abcdef?x=1",
        "mxc://example.org/abcdef\n",
        "mxc://exämple.org/abcdef",
        "mxc://example.org/äbcdef",
        "mxc://a..b/abcdef",
        "mxc://example.org:99999999/abcdef",
        "https://example.org/abcdef",
        "/etc/passwd",
        "",
        "mxc://" + "a" * 300 + "/abcdef",
        "mxc://example.org/" + "a" * 2000,
    ],
)
def test_parse_mxc__rejects_anything_that_could_escape_or_is_odd(uri: str) -> None:
    with pytest.raises(errors.MediaRejected):
        refs.parse_mxc(uri)


def test_paths__follow_synapse_layout() -> None:
    assert refs.local_content_path("GpYsrMfaGNOcjyzbKLKolcqE") == PurePosixPath(
        "local_content/Gp/Ys/rMfaGNOcjyzbKLKolcqE"
    )
    assert refs.local_thumbnail_path(
        "GpYsrMfaGNOcjyzbKLKolcqE", 320, 240, "image/png", "scale"
    ) == PurePosixPath("local_thumbnails/Gp/Ys/rMfaGNOcjyzbKLKolcqE/320-240-image-png-scale")
    assert refs.remote_content_path("remote.org:8448", "FsIdabcdefghijklmnopqrst") == (
        PurePosixPath("remote_content/remote.org:8448/Fs/Id/abcdefghijklmnopqrst")
    )
    assert refs.remote_thumbnail_path(
        "remote.org", "FsIdabcdefghijklmnopqrst", 32, 32, "image/jpeg", "crop"
    ) == PurePosixPath(
        "remote_thumbnail/remote.org/Fs/Id/abcdefghijklmnopqrst/32-32-image-jpeg-crop"
    )


@pytest.mark.parametrize(
    "call",
    [
        lambda: refs.local_content_path("abcd"),
        lambda: refs.local_content_path("ab/../x"),
        lambda: refs.remote_content_path("..", "FsIdabcdefgh"),
        lambda: refs.remote_content_path("remote.org", "ab/cd/../../x"),
        lambda: refs.remote_content_path("remote.org", "abcd\x00efgh"),
        lambda: refs.local_thumbnail_path("abcdefgh", 1, 1, "image/svg+xml", "scale"),
        lambda: refs.in_store(Path("/store"), PurePosixPath("/etc/passwd")),
        lambda: refs.in_store(Path("/store"), PurePosixPath("local_content/../../x")),
    ],
)
def test_paths__refuse_unsafe_components(call: Any) -> None:
    with pytest.raises(errors.MediaRejected):
        call()


def test_in_store__joins_a_safe_relative_path() -> None:
    rel = refs.local_content_path("GpYsrMfaGNOcjyzbKLKolcqE")
    assert refs.in_store(Path("/store"), rel) == Path(
        "/store/local_content/Gp/Ys/rMfaGNOcjyzbKLKolcqE"
    )
