"""The per-connection token bucket, and which origins may open the call's WebSocket."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from signaling.origins import allowed_origins, origin_allowed, origin_of
from signaling.ratelimit import TokenBucket


def test_token_bucket_allows_a_burst_then_the_rate() -> None:
    bucket = TokenBucket(rate=20, burst=40, now=100.0)
    assert all(bucket.take(100.0) for _ in range(40))
    assert not bucket.take(100.0)
    assert not bucket.take(100.04)  # 0.8 of a token back
    assert bucket.take(100.06)  # a token back after 1/20 s
    assert not bucket.take(100.06)
    assert sum(bucket.take(101.06) for _ in range(100)) == 20  # a second later: 20 more, not 40


def test_token_bucket_refills_only_up_to_the_burst() -> None:
    bucket = TokenBucket(rate=20, burst=40, now=0.0)
    assert bucket.take(0.0)
    assert sum(bucket.take(3600.0) for _ in range(100)) == 40


def test_token_bucket_ignores_a_clock_going_backwards() -> None:
    bucket = TokenBucket(rate=1, burst=1, now=10.0)
    assert bucket.take(10.0)
    assert not bucket.take(5.0)
    assert not bucket.take(10.5)  # going back did not reset the last refill
    assert bucket.take(11.0)


def test_token_bucket_refuses_nonsense_parameters() -> None:
    with pytest.raises(ValueError, match="positive rate"):
        TokenBucket(rate=0, burst=1, now=0)
    with pytest.raises(ValueError, match="burst"):
        TokenBucket(rate=1, burst=0, now=0)


@given(rate=st.floats(min_value=0.5, max_value=100), burst=st.integers(min_value=1, max_value=100),
       steps=st.lists(st.floats(min_value=0, max_value=0.5), min_size=1, max_size=300))
def test_token_bucket_never_passes_more_than_burst_plus_rate_times_time(rate: float, burst: int,
                                                                       steps: list[float]) -> None:
    bucket = TokenBucket(rate=rate, burst=burst, now=0.0)
    now, passed = 0.0, 0
    for step in steps:
        now += step
        passed += bucket.take(now)
    assert passed <= burst + rate * now + 1e-9


@pytest.mark.parametrize(("url", "origin"), [
    ("https://clinic.example", "https://clinic.example"),
    ("https://Clinic.Example:443/call?x=1", "https://clinic.example"),
    ("http://127.0.0.1:8080/", "http://127.0.0.1:8080"),
    ("http://[::1]:8080", "http://[::1]:8080"),
    ("ftp://clinic.example", None),
    ("clinic.example", None),
    ("https://clinic.example:99999", None),
])
def test_origin_of_normalises_http_origins(url: str, origin: str | None) -> None:
    assert origin_of(url) == origin


def test_origins_default_to_the_public_url_and_match_exactly() -> None:
    allowed = allowed_origins([], "https://clinic.example/")
    assert allowed == frozenset({"https://clinic.example"})
    assert origin_allowed("https://clinic.example", allowed)
    assert origin_allowed("https://CLINIC.example:443", allowed)
    for origin in (None, "", "null", "http://clinic.example", "https://clinic.example.evil.example",
                   "https://evil.example", "https://clinic.example:8443", "garbage"):
        assert not origin_allowed(origin, allowed), origin
    configured = allowed_origins(["https://a.example", "https://b.example:8443"], "https://clinic.example")
    assert origin_allowed("https://b.example:8443", configured)
    assert not origin_allowed("https://clinic.example", configured)
