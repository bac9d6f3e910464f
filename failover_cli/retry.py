"""Retry policy: exponential backoff with full jitter, and the server's Retry-After.

Pure functions: the random source and the current time are passed in.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC
from email.utils import parsedate_to_datetime

from .records import frozen


@frozen
class RetryPolicy:
    attempts: int = 3  # tries per provider, the first included
    base_delay: float = 0.5
    max_delay: float = 8.0
    max_retry_after: float = 30.0  # a server asking for longer than this is failed over
    # While another provider can answer, a Retry-After longer than this fails over at once
    # instead of making the caller wait on this one.
    failover_retry_after: float = 2.0


# The longest wait a server may ask for that is taken literally: one day. Absurd values
# (``1e12``, ``inf``) are clamped to it, so a breaker is never held open for centuries.
MAX_SERVER_WAIT = 86_400.0


def backoff_delay(retry: int, policy: RetryPolicy, random: Callable[[], float]) -> float:
    """Delay before retry number ``retry`` (1 = the first retry): full jitter, uniformly
    drawn from [0, min(max_delay, base_delay * 2**(retry-1)))."""
    exponent = min(max(0, retry - 1), 64)  # past 2**64 the cap has long applied
    ceiling = min(policy.max_delay, policy.base_delay * float(2**exponent))
    return random() * ceiling


def parse_retry_after(headers: Mapping[str, str], now: float) -> float | None:
    """Seconds the server asks us to wait, from ``retry-after-ms`` or ``Retry-After``
    (delta-seconds or an HTTP date, relative to ``now`` in epoch seconds). None if absent
    or unparseable; never negative, never more than :data:`MAX_SERVER_WAIT`."""
    value = _parse_retry_after(headers, now)
    return None if value is None else min(value, MAX_SERVER_WAIT)


def _parse_retry_after(headers: Mapping[str, str], now: float) -> float | None:
    raw_ms = _header(headers, "retry-after-ms")
    if raw_ms:
        try:
            value = float(raw_ms) / 1000.0
            if value == value and value >= 0:  # not NaN
                return value
        except ValueError:
            pass
    raw = _header(headers, "retry-after")
    if not raw:
        return None
    raw = raw.strip()
    try:
        value = float(raw)
    except ValueError:
        try:
            when = parsedate_to_datetime(raw)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        if when.tzinfo is None:  # asctime dates and -0000 carry no zone: HTTP dates are GMT
            when = when.replace(tzinfo=UTC)
        return max(0.0, when.timestamp() - now)
    if value != value or value < 0:
        return None
    return value


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """``name`` (lower case) from ``headers``, whose names may be in any case."""
    value = headers.get(name)
    if value is None and not hasattr(headers, "multi_items"):  # httpx.Headers already folds
        for key, v in headers.items():
            if key.lower() == name:
                return v
    return value


@frozen
class RetryDecision:
    retry: bool
    delay: float = 0.0
    reason: str = ""


def decide(
    *,
    tries_done: int,
    policy: RetryPolicy,
    retry_after: float | None,
    remaining: float,
    random: Callable[[], float],
) -> RetryDecision:
    """Whether to retry a transient failure on the same provider, and after how long.

    ``tries_done`` counts tries made so far on this provider; ``remaining`` is what is left of
    the request's overall deadline in seconds."""
    if tries_done >= policy.attempts:
        return RetryDecision(False, reason=f"{tries_done} tries used")
    if retry_after is not None:
        if retry_after > policy.max_retry_after:
            return RetryDecision(False, reason=f"Retry-After {retry_after:g}s > max_retry_after")
        delay = retry_after
    else:
        delay = backoff_delay(tries_done, policy, random)
    if delay >= remaining:
        return RetryDecision(False, reason=f"wait {delay:.2f}s exceeds the deadline")
    return RetryDecision(True, delay)
