"""Rate-limit headers: what a provider says is left of its budgets, and when they refill.

Pure functions; the current wall-clock time is passed in.

* OpenAI (and OpenAI-compatible servers): ``x-ratelimit-remaining-requests`` /
  ``-tokens`` (integers) and ``x-ratelimit-reset-requests`` / ``-tokens``, Go-style durations
  until the reset (``12ms``, ``1s``, ``6m0s``, ``1h2m3.5s``).
* Anthropic: ``anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-remaining``
  (integers) and ``-reset`` (RFC 3339 instants). The token kinds are folded into one: the
  smallest remainder and its reset.

Absurd values never get through: a negative, non-finite or unparseable remainder is dropped,
a huge one capped; a reset in the past is now, and one further than a day is a day away.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import datetime

from .types import RateLimit

MAX_RESET = 86_400.0  # seconds: no budget is reported as refilling later than this
MAX_REMAINING = 10**12

_OPENAI = "x-ratelimit-"
_ANTHROPIC = "anthropic-ratelimit-"
_TOKEN_KINDS = ("tokens", "input-tokens", "output-tokens")
_GO_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(h|ms|us|µs|ns|m|s)")
_GO_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}


def parse_ratelimit(headers: Mapping[str, str], now: float) -> RateLimit | None:
    """The rate-limit report in ``headers`` (names in any case), resets as epoch seconds
    relative to ``now``; None when the response reports nothing usable."""
    found = {k.lower(): v for k, v in headers.items() if "ratelimit-" in k.lower()}
    if not found:
        return None
    merged = _merge(_openai(found, now), _anthropic(found, now))
    return None if merged == RateLimit() else merged


def seconds_until_reset(ratelimit: RateLimit | None, now: float) -> float | None:
    """How long a 429 should wait: until an exhausted budget refills, else until the latest
    reported reset (the budget that ran out is not always reported as 0)."""
    if ratelimit is None:
        return None
    until = ratelimit.exhausted_until
    if until is None:
        resets = [r for r in (ratelimit.requests_reset_at, ratelimit.tokens_reset_at) if r]
        until = max(resets) if resets else None
    return None if until is None else max(0.0, until - now)


def parse_go_duration(text: str) -> float | None:
    """Seconds in a Go duration (``1h2m3.5s``, ``12ms``) or a bare number of seconds."""
    text = text.strip()
    try:
        value = float(text)
    except ValueError:
        pass
    else:
        return value if math.isfinite(value) else None
    sign = -1.0 if text.startswith("-") else 1.0
    body = text.lstrip("+-")
    if not body:
        return None
    total, end = 0.0, 0
    for match in _GO_PART.finditer(body):
        if match.start() != end:
            return None
        total += float(match.group(1)) * _GO_UNITS[match.group(2)]
        end = match.end()
    return sign * total if end == len(body) and math.isfinite(total) else None


def parse_rfc3339(text: str) -> float | None:
    """Epoch seconds of an RFC 3339 timestamp (``2026-05-01T12:00:00Z``); None if not one."""
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    return when.timestamp() if when.tzinfo is not None else None


def _openai(found: dict[str, str], now: float) -> RateLimit:
    return RateLimit(
        _remaining(found.get(_OPENAI + "remaining-requests")),
        _remaining(found.get(_OPENAI + "remaining-tokens")),
        _reset_in(found.get(_OPENAI + "reset-requests"), now),
        _reset_in(found.get(_OPENAI + "reset-tokens"), now),
    )


def _anthropic(found: dict[str, str], now: float) -> RateLimit:
    requests = _remaining(found.get(_ANTHROPIC + "requests-remaining"))
    requests_reset = _reset_at(found.get(_ANTHROPIC + "requests-reset"), now)
    tokens: int | None = None
    tokens_reset: float | None = None
    for kind in _TOKEN_KINDS:
        left = _remaining(found.get(f"{_ANTHROPIC}{kind}-remaining"))
        if left is not None and (tokens is None or left < tokens):
            tokens = left
            tokens_reset = _reset_at(found.get(f"{_ANTHROPIC}{kind}-reset"), now)
    return RateLimit(requests, tokens, requests_reset, tokens_reset)


def _merge(a: RateLimit, b: RateLimit) -> RateLimit:
    """``a``, with what it does not report taken from ``b``."""
    return RateLimit(
        a.remaining_requests if a.remaining_requests is not None else b.remaining_requests,
        a.remaining_tokens if a.remaining_tokens is not None else b.remaining_tokens,
        a.requests_reset_at if a.requests_reset_at is not None else b.requests_reset_at,
        a.tokens_reset_at if a.tokens_reset_at is not None else b.tokens_reset_at,
    )


def _remaining(raw: str | None) -> int | None:
    if raw is None:
        return None
    try:
        value = float(raw.strip())
    except ValueError:
        return None
    if not math.isfinite(value) or value < 0:
        return None
    return int(min(value, MAX_REMAINING))


def _reset_in(raw: str | None, now: float) -> float | None:
    seconds = parse_go_duration(raw) if raw is not None else None
    return None if seconds is None else now + _clamp_delay(seconds)


def _reset_at(raw: str | None, now: float) -> float | None:
    when = parse_rfc3339(raw) if raw is not None else None
    return None if when is None else now + _clamp_delay(when - now)


def _clamp_delay(seconds: float) -> float:
    return min(max(0.0, seconds), MAX_RESET)
