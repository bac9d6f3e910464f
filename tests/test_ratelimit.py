"""Rate-limit headers -> RateLimit (failover_cli.ratelimit): OpenAI's Go-style durations,
Anthropic's RFC 3339 resets and per-kind token budgets, and absurd values kept out."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from failover_cli.ratelimit import (
    MAX_REMAINING,
    MAX_RESET,
    parse_go_duration,
    parse_ratelimit,
    parse_rfc3339,
    seconds_until_reset,
)
from failover_cli.types import RateLimit

NOW = 1_800_000_000.0


def at(seconds: float) -> str:
    """The RFC 3339 timestamp ``seconds`` after NOW, as Anthropic writes it."""
    return datetime.fromtimestamp(NOW + seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("12ms", 0.012),
        ("1s", 1.0),
        ("6m0s", 360.0),
        ("1h2m3.5s", 3723.5),
        ("0s", 0.0),
        ("59.999s", 59.999),
        ("1.5us", 1.5e-6),
        ("2µs", 2e-6),
        ("300ns", 3e-7),
        ("20", 20.0),  # a bare number of seconds, as some compatible servers send
        (" 7s ", 7.0),
        ("-1s", -1.0),
    ],
)
def test_go_durations(text, seconds):
    assert parse_go_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "soon", "1x", "s", "m1", "1h 2m", "1e400", "nan", "inf"])
def test_not_a_duration(text):
    assert parse_go_duration(text) is None


def test_rfc3339():
    assert parse_rfc3339("2027-01-15T08:00:00Z") == datetime(2027, 1, 15, 8, tzinfo=UTC).timestamp()
    assert parse_rfc3339("2027-01-15T09:00:00.5+01:00") == pytest.approx(
        datetime(2027, 1, 15, 8, tzinfo=UTC).timestamp() + 0.5
    )
    for bad in ("tomorrow", "", "2027-01-15T08:00:00"):  # no zone: not RFC 3339
        assert parse_rfc3339(bad) is None


def test_openai_headers():
    headers = {
        "x-ratelimit-limit-requests": "10000",
        "x-ratelimit-remaining-requests": "9999",
        "x-ratelimit-reset-requests": "6ms",
        "x-ratelimit-limit-tokens": "30000000",
        "x-ratelimit-remaining-tokens": "29999000",
        "x-ratelimit-reset-tokens": "1m30s",
    }
    assert parse_ratelimit(headers, NOW) == RateLimit(
        remaining_requests=9999,
        remaining_tokens=29_999_000,
        requests_reset_at=pytest.approx(NOW + 0.006),
        tokens_reset_at=NOW + 90,
    )


def test_anthropic_headers_take_the_smallest_token_budget_and_its_reset():
    headers = {
        "anthropic-ratelimit-requests-limit": "4000",
        "anthropic-ratelimit-requests-remaining": "3999",
        "anthropic-ratelimit-requests-reset": at(1),
        "anthropic-ratelimit-tokens-remaining": "400000",
        "anthropic-ratelimit-tokens-reset": at(60),
        "anthropic-ratelimit-input-tokens-remaining": "350000",
        "anthropic-ratelimit-input-tokens-reset": at(30),
        "anthropic-ratelimit-output-tokens-remaining": "0",
        "anthropic-ratelimit-output-tokens-reset": at(45),
    }
    limit = parse_ratelimit(headers, NOW)
    assert limit == RateLimit(3999, 0, NOW + 1, NOW + 45)
    assert limit is not None and limit.exhausted_until == NOW + 45


def test_header_names_in_any_case_and_unrelated_headers():
    assert parse_ratelimit({"X-RateLimit-Remaining-Requests": "3"}, NOW) == RateLimit(3)
    assert parse_ratelimit({"content-type": "application/json"}, NOW) is None
    assert parse_ratelimit({}, NOW) is None


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"x-ratelimit-remaining-requests": "-1"}, None),  # Azure's "unknown"
        ({"x-ratelimit-remaining-requests": "nan"}, None),
        ({"x-ratelimit-remaining-requests": "inf"}, None),
        ({"x-ratelimit-remaining-requests": "1e400"}, None),
        ({"x-ratelimit-remaining-requests": "lots"}, None),
        ({"x-ratelimit-remaining-tokens": "1e30"}, RateLimit(remaining_tokens=MAX_REMAINING)),
        ({"x-ratelimit-remaining-tokens": "12.7"}, RateLimit(remaining_tokens=12)),
        ({"x-ratelimit-reset-requests": "-5s"}, RateLimit(requests_reset_at=NOW)),
        ({"x-ratelimit-reset-requests": "9999h"}, RateLimit(requests_reset_at=NOW + MAX_RESET)),
        ({"anthropic-ratelimit-requests-reset": at(-60)}, RateLimit(requests_reset_at=NOW)),
        (
            {"anthropic-ratelimit-requests-reset": "9999-12-31T23:59:59Z"},
            RateLimit(requests_reset_at=NOW + MAX_RESET),
        ),
        ({"anthropic-ratelimit-requests-reset": "soon"}, None),
    ],
)
def test_absurd_values_are_dropped_or_clamped(headers, expected):
    assert parse_ratelimit(headers, NOW) == expected


def test_a_token_kind_without_a_reset_still_reports_what_is_left():
    headers = {
        "anthropic-ratelimit-tokens-remaining": "10",
        "anthropic-ratelimit-output-tokens-remaining": "oops",
    }
    assert parse_ratelimit(headers, NOW) == RateLimit(remaining_tokens=10)


def test_openai_names_win_over_anthropic_names_when_both_are_sent():
    headers = {
        "x-ratelimit-remaining-requests": "5",
        "anthropic-ratelimit-requests-remaining": "7",
        "anthropic-ratelimit-tokens-remaining": "70",
    }
    assert parse_ratelimit(headers, NOW) == RateLimit(5, 70)


@pytest.mark.parametrize(
    ("limit", "expected"),
    [
        (None, None),
        (RateLimit(), None),
        (RateLimit(0, 500, NOW + 20, NOW + 90), 20.0),  # the exhausted budget decides
        (RateLimit(0, 0, NOW + 20, NOW + 90), 90.0),  # both exhausted: when both refilled
        (RateLimit(3, 10, NOW + 20, NOW + 90), 90.0),  # none reported 0: the latest reset
        (RateLimit(0, None, NOW - 5, None), 0.0),  # a reset in the past: now
    ],
)
def test_seconds_until_reset(limit, expected):
    assert seconds_until_reset(limit, NOW) == expected
