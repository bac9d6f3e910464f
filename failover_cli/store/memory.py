"""An in-process state store: what runs when no file or server can hold state."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from ..breaker import ProbeLease
from ..state import ChainState, StateDelta, forget, merge
from ._copy import detach


class MemoryStore:
    """Chains kept in a dict for the life of the process; safe to share between threads.

    ``load`` and ``update`` hand out copies, so callers cannot change the stored state.
    """

    def __init__(self, *, on_warning: Callable[[str], None] | None = None) -> None:
        self.on_warning = on_warning  # nothing here ever warns; kept for a uniform constructor
        self._chains: dict[str, ChainState] = {}
        self._leases: dict[tuple[str, str], tuple[str, float]] = {}  # -> (owner, expires_at)
        self._lock = threading.Lock()

    def load(self, chain: str) -> ChainState:
        with self._lock:
            return detach(self._chains.get(chain) or ChainState())

    def update(self, chain: str, delta: StateDelta) -> ChainState:
        with self._lock:
            merged = detach(merge(self._chains.get(chain) or ChainState(), delta))
            self._chains[chain] = merged
            return detach(merged)

    def reset(self, chain: str, providers: Sequence[str] | None = None) -> None:
        with self._lock:
            state = self._chains.get(chain)
            if state is None:
                return
            kept = forget(state, providers)  # spend stays: a reset must not reopen a budget
            if kept.providers:
                self._chains[chain] = kept
            else:
                self._chains.pop(chain, None)

    def claim_probe(
        self, chain: str, provider: str, owner: str, ttl: float, now: float
    ) -> ProbeLease:
        with self._lock:
            key = (chain, provider)
            held = self._leases.get(key)
            if held is not None and held[0] != owner and held[1] > now:
                return ProbeLease(False, held[0], held[1])
            self._leases = {k: v for k, v in self._leases.items() if v[1] > now}  # bounded
            self._leases[key] = (owner, now + ttl)
            return ProbeLease(True, owner, now + ttl)

    def end_probe(self, chain: str, provider: str, owner: str) -> None:
        with self._lock:
            held = self._leases.get((chain, provider))
            if held is not None and held[0] == owner:
                del self._leases[(chain, provider)]

    def close(self) -> None:
        """Nothing to release."""
