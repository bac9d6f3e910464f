"""Copies of stored state that callers may change without touching the store."""

from __future__ import annotations

import copy
from typing import Any

from ..state import ChainState, ProviderState


def detach(state: ChainState) -> ChainState:
    """A copy the caller may change freely. Cheap: samples, outcomes and breaker snapshots
    are immutable, so only the containers are copied."""
    return ChainState(
        {
            name: ProviderState(
                breaker=p.breaker,
                outcomes=list(p.outcomes),
                samples=list(p.samples),
                requests=p.requests,
                successes=p.successes,
                failures=dict(p.failures),
                last_error=_copy(p.last_error),
                last_health=_copy(p.last_health),
                last_ratelimit=_copy(p.last_ratelimit),
                spend=dict(p.spend),
            )
            for name, p in state.providers.items()
        }
    )


def _copy(d: dict[str, Any] | None) -> dict[str, Any] | None:
    return None if d is None else copy.deepcopy(d)
