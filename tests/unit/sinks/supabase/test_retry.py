"""Retry decisions and request cutting for the Supabase sink (pure: fake clock, no network)."""

from __future__ import annotations

import base64
import random
from collections.abc import Callable
from datetime import UTC, datetime

import httpx
import pytest

from listener.core import errors
from listener.sinks import media_protocol
from listener.sinks.supabase import retry, tus
from listener.sinks.supabase import rows as supabase_rows

Verdict = retry.Verdict


@pytest.mark.parametrize(
    ("status", "body", "verdict"),
    [
        (201, "", Verdict.OK),
        (429, '{"message":"API rate limit exceeded"}', Verdict.RETRY),
        (503, '{"code":"PGRST002","message":"Could not query the database"}', Verdict.RETRY),
        (502, "<html>bad gateway</html>", Verdict.RETRY),
        (504, "", Verdict.RETRY),
        (500, '{"code":"40001","message":"could not serialize access"}', Verdict.RETRY),
        (500, '{"code":"57014","message":"statement timeout"}', Verdict.RETRY),
        (500, '{"code":"09000","message":"trigger failed"}', Verdict.REJECT),
        (544, '{"statusCode":"544","code":"DatabaseTimeout"}', Verdict.RETRY),
        (400, '{"statusCode":"503","code":"DatabaseConnectionLimit"}', Verdict.RETRY),
        (400, '{"code":"22P02","message":"invalid input syntax for type bigint"}', Verdict.REJECT),
        (400, '{"code":"PGRST204","message":"Could not find the column"}', Verdict.REJECT),
        (404, '{"code":"PGRST205","message":"Could not find the table"}', Verdict.REJECT),
        (409, '{"code":"23505","message":"duplicate key value"}', Verdict.REJECT),
        (401, '{"message":"Invalid API key"}', Verdict.AUTH),
        (403, '{"code":"42501","message":"permission denied for table messages"}', Verdict.AUTH),
        (400, '{"statusCode":"400","code":"InvalidJWT"}', Verdict.AUTH),
        (413, '{"message":"Request Entity Too Large"}', Verdict.TOO_LARGE),
        (400, '{"statusCode":"413","code":"EntityTooLarge"}', Verdict.TOO_LARGE),
    ],
)  # fmt: skip
def test_classify__status_and_body_decide(status: int, body: str, verdict: Verdict) -> None:
    assert retry.classify(status, body) is verdict


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def _failing(status: int, body: str = "", headers: dict[str, str] | None = None) -> Exception:
    request = httpx.Request("POST", "http://supabase.test/rest/v1/messages")
    response = httpx.Response(status, text=body, headers=headers, request=request)
    try:
        response.raise_for_status()
    except httpx.HTTPStatusError as exc:
        return exc
    raise AssertionError("not an error status")


def _caller(fake: FakeTime, *, budget_s: float = 10.0) -> retry.Caller:
    return retry.Caller(
        budget_s=budget_s,
        max_retry_after_s=60.0,
        rng=random.Random(1),
        clock=fake.clock,
        sleep=fake.sleep,
    )


def _script(outcomes: list[Exception | str]) -> Callable[[], object]:
    async def action() -> str:
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    return action


async def test_caller__retries_transient_failures_then_succeeds() -> None:
    fake = FakeTime()
    action = _script(
        [_failing(503), httpx.ConnectError("refused"), httpx.ReadTimeout("slow"), "ok"]
    )
    assert await _caller(fake).call("upsert", action) == "ok"  # type: ignore[arg-type]
    assert len(fake.sleeps) == 3


async def test_caller__honours_retry_after_and_gates_the_next_request() -> None:
    fake = FakeTime()
    caller = _caller(fake)
    action = _script([_failing(429, headers={"Retry-After": "7"}), "ok"])
    assert await caller.call("upsert", action) == "ok"  # type: ignore[arg-type]
    assert fake.sleeps == [7.0]
    assert caller.gate.not_before == 7.0


async def test_caller__retry_after_beyond_the_budget_gives_up_but_keeps_the_gate() -> None:
    fake = FakeTime()
    caller = _caller(fake, budget_s=2.0)
    with pytest.raises(errors.SinkUnavailable, match="429"):
        await caller.call("upsert", _script([_failing(429, headers={"Retry-After": "30"})]))  # type: ignore[arg-type]
    assert fake.sleeps == []
    assert await caller.call("again", _script(["ok"])) == "ok"  # type: ignore[arg-type]
    assert fake.sleeps == [30.0]


async def test_caller__gives_up_with_sink_unavailable_after_its_budget() -> None:
    fake = FakeTime()
    outcomes: list[Exception | str] = [_failing(503) for _ in range(100)]
    with pytest.raises(errors.SinkUnavailable, match="HTTP 503"):
        await _caller(fake, budget_s=3.0).call("upsert", _script(outcomes))  # type: ignore[arg-type]
    assert 0 < fake.now <= 3.0


@pytest.mark.parametrize(
    ("failure", "raised"),
    [
        (_failing(400, '{"code":"22P02"}'), errors.RowRejected),
        (_failing(401, '{"message":"Invalid API key"}'), errors.SinkAuthError),
        (_failing(413, ""), errors.PayloadTooLarge),
    ],
)
async def test_caller__does_not_retry_what_retrying_cannot_fix(
    failure: Exception, raised: type[Exception]
) -> None:
    fake = FakeTime()
    with pytest.raises(raised) as caught:
        await _caller(fake).call("upsert", _script([failure]))  # type: ignore[arg-type]
    assert fake.sleeps == []
    assert "HTTP" in str(caught.value)


async def test_caller__error_from_a_storage_exception_chain_is_read() -> None:
    class StorageApiError(Exception):
        pass

    async def action() -> None:
        try:
            raise _failing(400, '{"statusCode":"503","code":"DatabaseConnectionLimit"}')
        except httpx.HTTPStatusError as exc:
            raise StorageApiError("unparsed") from exc

    fake = FakeTime()
    with pytest.raises(errors.SinkUnavailable):
        await _caller(fake, budget_s=1.0).call("upload", action)
    assert fake.sleeps


def test_split_by_bytes__keeps_every_request_under_the_limit() -> None:
    rows = [{"event_id": f"${i}", "body": "x" * (i * 37 % 500)} for i in range(300)]
    chunks = list(supabase_rows.split_by_bytes(rows, max_bytes=5000))
    assert [r for chunk in chunks for r in chunk] == rows
    for chunk in chunks:
        assert sum(supabase_rows.encoded_size(r) for r in chunk) + 2 <= 5000


def test_split_by_bytes__an_oversized_row_goes_alone() -> None:
    rows = [{"a": "x"}, {"a": "y" * 10_000}, {"a": "z"}]
    assert [len(c) for c in supabase_rows.split_by_bytes(rows, max_bytes=1000)] == [1, 1, 1]


def test_split_for_url__bounds_the_in_filter() -> None:
    values = [f"$event{i:04d}:example.org" for i in range(1000)]
    chunks = list(supabase_rows.split_for_url(values, max_chars=4000))
    assert [v for chunk in chunks for v in chunk] == values
    assert all(sum(len(v) * 3 + 3 for v in chunk) <= 4000 for chunk in chunks)


NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("old_status", "old_sha", "new_status", "new_sha", "write"),
    [
        (None, None, "pending", None, True),
        ("pending", None, "stored", "aa", True),
        ("stored", "aa", "missing", None, False),  # never downgraded
        ("stored", "aa", "stored", "aa", False),  # unchanged: left alone
        ("stored", "aa", "stored", "bb", True),
        ("missing", None, "failed", None, True),
    ],
)
def test_media_needs_write__stored_is_never_downgraded(
    old_status: str | None, old_sha: str | None, new_status: str, new_sha: str | None, write: bool
) -> None:
    old = None
    if old_status is not None:
        old = {"status": old_status, "sha256": old_sha, "storage_path": old_sha, "attempts": 1}
    new = media_protocol.MediaRow(
        "$e", "mxc://a/b", "image", new_status, sha256=new_sha, storage_path=new_sha
    )  # type: ignore[arg-type]
    assert supabase_rows.media_needs_write(new, old) is write


def test_media_row__keeps_what_is_known_and_counts_an_attempt() -> None:
    old = {"status": "pending", "attempts": 2, "mimetype": "image/png", "room_id": "!r"}
    new = media_protocol.MediaRow("$e", "mxc://a/b", "image", "missing", "gone")
    row = supabase_rows.media_row(new, old, now=NOW)
    assert (row["mimetype"], row["room_id"], row["attempts"]) == ("image/png", "!r", 3)
    assert row["status_reason"] == "gone"


def test_tus_metadata_header__base64_pairs() -> None:
    header = tus.metadata_header({"bucketName": "media", "objectName": "ab/cd/abcd"})
    pairs = dict(item.split(" ") for item in header.split(","))
    assert base64.b64decode(pairs["objectName"]) == b"ab/cd/abcd"
    assert base64.b64decode(pairs["bucketName"]) == b"media"
