"""The two seams the router depends on: a provider adapter and a state store.

The router and health checker take these Protocols; only the CLI (and the library's default
wiring in :func:`failover_cli.providers.create_provider`) names concrete classes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from .breaker import ProbeLease
    from .state import ChainState, StateDelta
    from .types import (
        Completion,
        CompletionRequest,
        HealthResult,
        ProviderConfig,
        StreamEvent,
    )


@runtime_checkable
class Provider(Protocol):
    """One provider's API behind one interface.

    Every failure is raised as a :class:`failover_cli.errors.ProviderError` subclass; no
    transport exception (httpx or otherwise) escapes. ``timeout`` bounds the whole attempt.
    """

    config: ProviderConfig

    @property
    def name(self) -> str: ...

    async def complete(self, request: CompletionRequest, *, timeout: float) -> Completion: ...

    def stream(self, request: CompletionRequest, *, timeout: float) -> AsyncIterator[StreamEvent]:
        """Yield ``TextDelta``s and ``ToolCallDelta``s, then exactly one ``StreamEnd``; a
        stream without its terminal marker raises ``TransientError(reason="truncated")``."""
        ...

    async def health(self, *, deep: bool = False, timeout: float = 5.0) -> HealthResult:
        """Check reachability without spending tokens (``deep``: a 1-token completion).

        Never raises for a provider failure: the result carries the error."""
        ...

    async def aclose(self) -> None: ...


class StateStore(Protocol):
    """Where breaker state and history live between invocations.

    ``update`` is an atomic read-merge-write: concurrent writers lose nothing. Methods raise
    :class:`failover_cli.errors.StateError` when the store cannot be reached or written.
    """

    def load(self, chain: str) -> ChainState: ...

    def update(self, chain: str, delta: StateDelta) -> ChainState: ...

    def reset(self, chain: str, providers: Sequence[str] | None = None) -> None: ...

    def claim_probe(
        self, chain: str, provider: str, owner: str, ttl: float, now: float
    ) -> ProbeLease:
        """Take ``provider``'s half-open probe lease for ``owner`` for ``ttl`` seconds, unless
        another owner holds one that has not expired at ``now`` (epoch seconds). Claiming
        again as the holder renews it. Atomic across every process sharing the store."""
        ...

    def end_probe(self, chain: str, provider: str, owner: str) -> None:
        """Give the lease back if ``owner`` still holds it (its probe's outcome is stored)."""
        ...

    def close(self) -> None: ...
