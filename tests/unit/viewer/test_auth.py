"""The token, the session cookie and the limit on failed attempts."""

from __future__ import annotations

import pytest

from listener.viewer import auth


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_token_and_the_session_cookie() -> None:
    token = auth.new_token()
    assert len(token) >= 40
    checker = auth.TokenAuth(token)
    assert checker.token_matches(token)
    assert not checker.token_matches(token[:-1])
    assert not checker.token_matches("")
    assert checker.bearer_matches(f"Bearer {token}")
    assert checker.bearer_matches(f"bearer {token}")
    assert not checker.bearer_matches(f"Basic {token}")
    assert not checker.bearer_matches(token)
    session = checker.session_value()
    assert token not in session
    assert checker.session_matches(session)
    assert not checker.session_matches(token)
    assert not auth.TokenAuth(auth.new_token()).session_matches(session)  # new token: logged out
    assert not checker.session_matches("\udcff")  # undecodable input is just a mismatch


def test_a_short_token_is_refused() -> None:
    with pytest.raises(ValueError, match="16 characters"):
        auth.TokenAuth("short")


def test_failures_are_limited_per_client_and_forgotten_after_the_window() -> None:
    clock = Clock()
    limiter = auth.FailureLimiter(clock=clock, per_client=3, total=100, window_s=60)
    for _ in range(3):
        assert limiter.check("a").allowed
        limiter.failed("a")
    verdict = limiter.check("a")
    assert not verdict.allowed
    assert verdict.retry_after_s == 60
    assert limiter.check("b").allowed  # another client is not punished
    clock.now += 30
    assert limiter.check("a").retry_after_s == 30
    clock.now += 30
    assert limiter.check("a").allowed


def test_failures_are_limited_in_total_across_clients() -> None:
    clock = Clock()
    limiter = auth.FailureLimiter(clock=clock, per_client=10, total=5, window_s=60)
    for i in range(5):
        limiter.failed(f"client-{i}")
    assert not limiter.check("fresh").allowed


def test_the_limiter_remembers_a_bounded_number_of_clients() -> None:
    limiter = auth.FailureLimiter(clock=Clock(), per_client=1, total=10**9, max_clients=100)
    for i in range(1000):
        limiter.failed(f"c{i}")
    assert not limiter.check("c999").allowed
    assert limiter.check("c0").allowed  # forgotten: the oldest go first
