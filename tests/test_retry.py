"""Retry policy: full-jitter backoff, the server's Retry-After, and the retry decision."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from email.utils import format_datetime

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from failover_cli.retry import (
    RetryDecision,
    RetryPolicy,
    backoff_delay,
    decide,
    parse_retry_after,
)

NOW = 1_800_000_000.0
ALMOST_ONE = 1.0 - 1e-12


def const(value: float) -> Callable[[], float]:
    return lambda: value


def no_random() -> float:
    raise AssertionError("the random source must not be used here")


def http_date(epoch: float) -> str:
    return format_datetime(datetime.fromtimestamp(epoch, UTC), usegmt=True)


# --- backoff_delay ------------------------------------------------------------------------------


def test_backoff_ceiling_doubles_from_base_delay_and_caps_at_max_delay() -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=8.0)
    delays = [backoff_delay(r, policy, const(0.5)) for r in range(1, 9)]
    assert delays == [0.25, 0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0]


def test_backoff_top_of_the_jitter_range_is_just_below_the_ceiling() -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=8.0)
    ceilings = [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]
    for retry, ceiling in enumerate(ceilings, start=1):
        delay = backoff_delay(retry, policy, const(ALMOST_ONE))
        assert delay == pytest.approx(ceiling, rel=1e-9)
        assert delay < ceiling


def test_backoff_bottom_of_the_jitter_range_is_zero() -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=8.0)
    assert [backoff_delay(r, policy, const(0.0)) for r in range(1, 8)] == [0.0] * 7


def test_backoff_cap_that_is_not_a_power_of_two() -> None:
    policy = RetryPolicy(base_delay=1.0, max_delay=5.0)
    delays = [backoff_delay(r, policy, const(ALMOST_ONE)) for r in range(1, 6)]
    assert delays == pytest.approx([1.0, 2.0, 4.0, 5.0, 5.0], rel=1e-9)


def test_backoff_draws_exactly_once_per_delay() -> None:
    calls: list[int] = []

    def counting() -> float:
        calls.append(1)
        return 0.5

    backoff_delay(3, RetryPolicy(), counting)
    assert len(calls) == 1


@settings(max_examples=200, deadline=None, database=None)
@given(
    retry=st.integers(min_value=1, max_value=60),
    u=st.floats(min_value=0.0, max_value=ALMOST_ONE),
    base=st.floats(min_value=0.01, max_value=5.0),
    cap=st.floats(min_value=0.01, max_value=100.0),
)
def test_backoff_is_uniform_in_zero_to_the_capped_ceiling(
    retry: int, u: float, base: float, cap: float
) -> None:
    policy = RetryPolicy(base_delay=base, max_delay=cap)
    ceiling = min(cap, base * 2 ** (retry - 1))
    delay = backoff_delay(retry, policy, const(u))
    assert delay == pytest.approx(u * ceiling, rel=1e-12, abs=1e-15)
    assert 0.0 <= delay <= cap


def test_backoff_for_a_very_late_retry_is_still_capped() -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=8.0)
    assert backoff_delay(2000, policy, const(0.5)) == 4.0
    tiny_base = RetryPolicy(base_delay=0.001, max_delay=3600.0)
    assert backoff_delay(10**6, tiny_base, const(0.5)) == 1800.0


# --- parse_retry_after --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [("120", 120.0), ("0", 0.0), (" 7 ", 7.0), ("1.5", 1.5), ("86400", 86400.0)],
)
def test_retry_after_delta_seconds(value: str, expected: float) -> None:
    assert parse_retry_after({"retry-after": value}, NOW) == expected


def test_retry_after_http_date_is_relative_to_now() -> None:
    headers = {"retry-after": http_date(NOW + 90)}
    assert parse_retry_after(headers, NOW) == 90.0
    assert parse_retry_after(headers, NOW + 30) == 60.0  # the passed-in now, not the real clock


def test_retry_after_obsolete_rfc850_date() -> None:
    headers = {"retry-after": "Sunday, 06-Nov-94 08:49:37 GMT"}
    assert parse_retry_after(headers, 784_111_777.0 - 42) == 42.0


def test_retry_after_date_in_the_past_means_now() -> None:
    assert parse_retry_after({"retry-after": http_date(NOW - 3600)}, NOW) == 0.0


@pytest.fixture
def local_time_not_utc() -> Iterator[None]:
    old = os.environ.get("TZ")
    os.environ["TZ"] = "EST+05EDT,M3.2.0,M11.1.0"
    time.tzset()
    try:
        yield
    finally:
        if old is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = old
        time.tzset()


@pytest.mark.usefixtures("local_time_not_utc")
@pytest.mark.parametrize(
    "date",
    [
        "Sun Nov  6 08:49:37 1994",  # asctime: RFC 9110 5.6.7 says recipients accept it, in GMT
        "Sun, 06 Nov 1994 08:49:37 -0000",
        "Sun, 06 Nov 1994 08:49:37 GMT",
    ],
)
def test_retry_after_date_is_gmt_whatever_the_local_zone(date: str) -> None:
    assert time.timezone != 0  # the fixture did move the local zone
    assert parse_retry_after({"retry-after": date}, 784_111_777.0 - 42) == 42.0


def test_retry_after_ms_is_milliseconds() -> None:
    assert parse_retry_after({"retry-after-ms": "1500"}, NOW) == 1.5
    assert parse_retry_after({"retry-after-ms": "0"}, NOW) == 0.0
    assert parse_retry_after({"retry-after-ms": "250.5"}, NOW) == 0.2505


def test_retry_after_ms_takes_precedence() -> None:
    headers = {"retry-after-ms": "1500", "retry-after": "30"}
    assert parse_retry_after(headers, NOW) == 1.5


@pytest.mark.parametrize("bad_ms", ["soon", "-5", "nan", "", "1,5"])
def test_unusable_retry_after_ms_falls_back_to_retry_after(bad_ms: str) -> None:
    headers = {"retry-after-ms": bad_ms, "retry-after": "30"}
    assert parse_retry_after(headers, NOW) == 30.0
    assert parse_retry_after({"retry-after-ms": bad_ms}, NOW) is None


@pytest.mark.parametrize(
    "bad",
    ["", "   ", "soon", "-1", "-0.5", "nan", "NaN", "Mon, 99 Foo 2015 25:61:00 GMT", "12 parsecs"],
)
def test_garbage_or_negative_retry_after_is_ignored(bad: str) -> None:
    assert parse_retry_after({"retry-after": bad}, NOW) is None


def test_no_retry_after_header() -> None:
    assert parse_retry_after({}, NOW) is None
    assert parse_retry_after({"content-type": "application/json"}, NOW) is None


def test_retry_after_from_real_response_headers_of_any_case() -> None:
    headers = httpx.Headers({"Retry-After": "12", "Content-Type": "application/json"})
    assert parse_retry_after(headers, NOW) == 12.0
    headers = httpx.Headers({"Retry-After-Ms": "750", "Retry-After": "12"})
    assert parse_retry_after(headers, NOW) == 0.75


def test_retry_after_from_a_plain_mapping_is_case_insensitive() -> None:
    assert parse_retry_after({"Retry-After": "12"}, NOW) == 12.0
    assert parse_retry_after({"RETRY-AFTER": "12"}, NOW) == 12.0
    assert parse_retry_after({"Retry-After-Ms": "750", "Retry-After": "12"}, NOW) == 0.75
    assert parse_retry_after({"Content-Type": "text/plain"}, NOW) is None


@settings(max_examples=200, deadline=None, database=None)
@given(value=st.text(max_size=40), ms=st.one_of(st.none(), st.text(max_size=20)))
def test_retry_after_never_raises_and_is_never_negative(value: str, ms: str | None) -> None:
    headers = {"retry-after": value}
    if ms is not None:
        headers["retry-after-ms"] = ms
    result = parse_retry_after(headers, NOW)
    assert result is None or result >= 0.0


# --- decide -------------------------------------------------------------------------------------


def test_attempts_counts_tries_including_the_first() -> None:
    policy = RetryPolicy(attempts=3, base_delay=0.5)
    retries = [
        decide(tries_done=n, policy=policy, retry_after=None, remaining=60, random=const(0.5)).retry
        for n in (1, 2, 3, 4)
    ]
    assert retries == [True, True, False, False]


def test_a_single_attempt_never_retries() -> None:
    policy = RetryPolicy(attempts=1)
    decision = decide(tries_done=1, policy=policy, retry_after=1.0, remaining=60, random=no_random)
    assert decision.retry is False
    assert decision.delay == 0.0
    assert decision.reason


def test_decide_uses_backoff_for_the_retry_number() -> None:
    policy = RetryPolicy(attempts=5, base_delay=0.5, max_delay=8.0)
    delays = [
        decide(tries_done=n, policy=policy, retry_after=None, remaining=60, random=const(0.5))
        for n in (1, 2, 3, 4)
    ]
    assert delays == [RetryDecision(True, d) for d in (0.25, 0.5, 1.0, 2.0)]


def test_decide_waits_exactly_what_the_server_asks() -> None:
    policy = RetryPolicy(attempts=3, max_retry_after=30.0)
    decision = decide(tries_done=1, policy=policy, retry_after=2.5, remaining=60, random=no_random)
    assert decision == RetryDecision(True, 2.5)
    decision = decide(tries_done=1, policy=policy, retry_after=0.0, remaining=60, random=no_random)
    assert decision == RetryDecision(True, 0.0)


def test_retry_after_up_to_max_retry_after_is_honoured() -> None:
    policy = RetryPolicy(attempts=3, max_retry_after=30.0)
    decision = decide(tries_done=1, policy=policy, retry_after=30.0, remaining=60, random=no_random)
    assert decision == RetryDecision(True, 30.0)


def test_retry_after_longer_than_max_retry_after_fails_over() -> None:
    policy = RetryPolicy(attempts=3, max_retry_after=30.0)
    decision = decide(
        tries_done=1, policy=policy, retry_after=30.001, remaining=600, random=no_random
    )
    assert decision.retry is False
    assert decision.reason


def test_retry_after_beyond_the_remaining_deadline_fails_over() -> None:
    policy = RetryPolicy(attempts=3, max_retry_after=30.0)
    decision = decide(
        tries_done=1, policy=policy, retry_after=10.0, remaining=9.5, random=no_random
    )
    assert decision.retry is False
    decision = decide(
        tries_done=1, policy=policy, retry_after=10.0, remaining=10.5, random=no_random
    )
    assert decision == RetryDecision(True, 10.0)


def test_backoff_beyond_the_remaining_deadline_fails_over() -> None:
    policy = RetryPolicy(attempts=5, base_delay=4.0, max_delay=8.0)
    decision = decide(
        tries_done=2, policy=policy, retry_after=None, remaining=3.0, random=const(0.5)
    )
    assert decision.retry is False  # backoff is 4.0 s, 3.0 s are left
    decision = decide(
        tries_done=2, policy=policy, retry_after=None, remaining=4.5, random=const(0.5)
    )
    assert decision == RetryDecision(True, 4.0)


def test_no_time_left_never_retries() -> None:
    for remaining in (0.0, -1.0):
        decision = decide(
            tries_done=1,
            policy=RetryPolicy(),
            retry_after=None,
            remaining=remaining,
            random=const(0.0),
        )
        assert decision.retry is False
