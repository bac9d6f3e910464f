"""Exceptions raised by failover. Nothing above the provider adapters sees a transport type.

::

    FailoverError                      base of everything failover raises on purpose
    ├── ConfigError                    bad providers.yaml: file, line, key path     (CLI exit 2)
    ├── StateError                     the state store could not be read or written
    ├── ProviderError                  one provider failed one attempt; .error_class decides:
    │   ├── TransientError               transient: retry with backoff, then fail over
    │   ├── ProviderUnavailable          provider: auth, quota, unknown model; fail over at once
    │   ├── InvalidRequest               request: 400/413/422; not retried, not failed over
    │   └── ContextLengthExceeded        context_length: fail over, breaker untouched
    └── RoutingError                   the router gave up on the whole request
        ├── AllProvidersFailed           nobody could answer; .attempts lists every try (exit 1)
        │   └── BudgetExceeded             the budget ruled out who could have answered (exit 4)
        ├── RequestRejected              a provider rejected the request itself (exit 3)
        └── QueueFull                    every provider is down and too many requests wait (exit 1)

Messages never contain API keys: adapters build them with :func:`redact`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from .types import ErrorClass

if TYPE_CHECKING:
    from .types import Attempt, RateLimit


class FailoverError(Exception):
    """Base class of every error failover raises on purpose."""


class ConfigError(FailoverError):
    """The configuration is invalid. ``str()`` is ``file:line: key.path: problem``."""

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        path: str | None = None,
        problems: list[ConfigError] | None = None,
    ) -> None:
        self.message = message
        self.file = file
        self.line = line
        self.path = path
        self.problems = problems or [self]
        super().__init__(self._render())

    def _render(self) -> str:
        where = ""
        if self.file:
            where = f"{self.file}:{self.line}: " if self.line else f"{self.file}: "
        key = f"{self.path}: " if self.path else ""
        return f"{where}{key}{self.message}"


class StateError(FailoverError):
    """The state store could not be read or written (the request itself still runs)."""


class ProviderError(FailoverError):
    """One attempt on one provider failed. Raised by adapters, handled by the router."""

    error_class: ErrorClass = ErrorClass.TRANSIENT

    def __init__(
        self,
        message: str,
        *,
        provider: str = "",
        status: int | None = None,
        retry_after: float | None = None,
        reason: str | None = None,
        partial_text: str = "",
        ratelimit: RateLimit | None = None,
    ) -> None:
        self.message = message
        self.provider = provider
        self.status = status
        self.retry_after = retry_after  # seconds the server asked us to wait, if it did
        self.reason = reason  # short machine word: "timeout", "connect", "truncated", ...
        self.partial_text = partial_text  # text streamed before the failure
        self.ratelimit = ratelimit  # what the response's rate-limit headers said, if any
        super().__init__(message)

    def __str__(self) -> str:
        status = f" {self.status}" if self.status else ""
        who = f"{self.provider}:" if self.provider else ""
        return f"{who}{status} {self.error_class.value}: {self.message}".strip()


class TransientError(ProviderError):
    """Connect errors, timeouts, 408/409/429/5xx/529, a stream broken before its first token."""

    error_class = ErrorClass.TRANSIENT


class ProviderUnavailable(ProviderError):
    """401, 403, unknown model, exhausted quota: this provider cannot serve for a long while."""

    error_class = ErrorClass.PROVIDER


class InvalidRequest(ProviderError):
    """400, 413, 422: the same request would fail everywhere."""

    error_class = ErrorClass.REQUEST


class ContextLengthExceeded(ProviderError):
    """The prompt is too long for this model; another model may take it."""

    error_class = ErrorClass.CONTEXT_LENGTH


ERROR_TYPES: dict[ErrorClass, type[ProviderError]] = {
    ErrorClass.TRANSIENT: TransientError,
    ErrorClass.PROVIDER: ProviderUnavailable,
    ErrorClass.REQUEST: InvalidRequest,
    ErrorClass.CONTEXT_LENGTH: ContextLengthExceeded,
}


class RoutingError(FailoverError):
    """The router gave up on the whole request."""

    def __init__(self, message: str, attempts: Iterable[Attempt] = ()) -> None:
        self.attempts = tuple(attempts)
        super().__init__(message)


class AllProvidersFailed(RoutingError):
    """No provider could answer. ``attempts`` holds every try and skip, in order; ``reason``
    says why, for callers that act on it without reading the message: ``"deadline"`` (the
    request's deadline passed), ``"not_configured"`` (no provider has its key),
    ``"unsupported"`` (none can serve what the request needs), ``"broken"`` (an answer broke
    and none could continue it), ``"still_down"`` (after the bounded wait),
    ``"unavailable"`` (none could be tried), ``"failed"`` (each tried one failed) or
    ``"budget"``."""

    def __init__(
        self, message: str, attempts: Iterable[Attempt] = (), reason: str = "failed"
    ) -> None:
        self.reason = reason
        super().__init__(message, attempts)


class BudgetExceeded(AllProvidersFailed):
    """No provider answered, and the budget skipped some that might have: the message names
    each limit and its spend (those attempts have ``reason == "budget"``)."""


class RequestRejected(RoutingError):
    """A provider rejected the request itself (``request`` class); it was not failed over."""

    def __init__(self, error: ProviderError, attempts: Iterable[Attempt] = ()) -> None:
        self.error = error
        super().__init__(f"request rejected by {error.provider}: {error.message}", attempts)


class QueueFull(RoutingError):
    """Every provider is down and ``queue.max_size`` requests are already waiting."""


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """Replace every secret (of 4+ characters) occurring in ``text`` with ``[REDACTED]``."""
    for secret in secrets:
        if secret and len(secret) >= 4 and secret in text:
            text = text.replace(secret, "[REDACTED]")
    return text
