"""What one process knows about each provider: breakers, recent latencies, and the batch of
outcomes not yet written to the state store.

The store is never on a request's path: outcomes go to memory, and :meth:`Tracker.flush`
writes them in one merge (the router schedules it after breaker transitions, at most every
``flush_interval`` seconds, and at close; the CLI flushes once at exit).

The one exception is a half-open breaker: before its probe is sent the tracker claims the
provider's probe lease from the store, so one probe goes out for the whole fleet. While
another process holds it the provider is skipped (and waiters look again every
``PROBE_LEASE_POLL`` seconds, or when it expires); the lease is given back only once the
probe's outcome is in the store, and a claimant that wins it first re-reads the store, so a
probe whose outcome already landed is not repeated. A closed breaker never touches the store.
With ``claims_off_loop`` (a long-running router: the gateway, a library user) the claim runs
in a worker thread, so a slow or hung store never stalls the event loop: the provider is
skipped until the answer is in (looked at again every ``CLAIM_POLL`` seconds), and a lease won
but not used within ``PROBE_LEASE_POLL`` is given back.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace

from .breaker import (
    BreakerPolicy,
    BreakerState,
    CircuitBreaker,
    Permit,
    ProbeLease,
    Transition,
)
from .clock import Clock
from .errors import ProviderError, StateError
from .protocols import StateStore
from .scoring import ProviderStats, ScoreBreakdown, Weights, score_all
from .state import DEFAULT_HISTORY, ChainState, ProviderDelta, Sample, StateDelta
from .types import ErrorClass, HealthResult, RateLimit

LATENCY_WINDOW = 100  # recent successful latencies kept in memory for scoring
PROBE_LEASE_POLL = 0.1  # seconds before asking again for a lease another process holds
PROBE_LEASE_TTL = (1.0, 300.0)  # a lease lasts the provider's timeout, within these bounds
CLAIM_POLL = 0.01  # seconds before looking again for the answer to a claim made off the loop

TransitionListener = Callable[[str, Transition], None]


class Tracker:
    """Breakers and statistics for a chain's providers, with batched persistence."""

    def __init__(
        self,
        names: Iterable[str],
        policy: BreakerPolicy,
        clock: Clock,
        *,
        store: StateStore | None = None,
        chain: str = "default",
        history: int = DEFAULT_HISTORY,
        on_warning: Callable[[str], None] | None = None,
        on_transition: TransitionListener | None = None,
        fingerprints: Mapping[str, str] | None = None,
        probe_ttls: Mapping[str, float] | None = None,
        claims_off_loop: bool = False,
    ) -> None:
        self.clock = clock
        self.store = store
        self.chain = chain
        self.on_warning = on_warning or (lambda _msg: None)
        self.on_transition = on_transition or (lambda _n, _t: None)
        self.names = list(names)
        self.breakers = {n: CircuitBreaker(policy) for n in self.names}
        self.latencies: dict[str, deque[float]] = {
            n: deque(maxlen=LATENCY_WINDOW) for n in self.names
        }
        self.pending = StateDelta(history=history)
        self._changed: dict[str, asyncio.Event] = {}
        self._warned = False
        self.fingerprints = dict(fingerprints or {})
        self.last_reason: dict[str, str | None] = {}  # reason of each provider's last failure
        # The fleet-wide probe lease (stores written before it existed have none).
        # os.urandom, not uuid: importing uuid imports platform, on every ask's start-up path
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{os.urandom(6).hex()}"
        self.probe_ttls = dict(probe_ttls or {})
        self._leasing = store is not None and hasattr(store, "claim_probe")
        self._leases: set[str] = set()  # providers whose probe lease this process holds
        self._ending: set[str] = set()  # ... whose probe ended: give back after the next flush
        self.claims_off_loop = claims_off_loop
        self._flushing: tuple[asyncio.AbstractEventLoop, asyncio.Lock] | None = None
        self._claims: dict[str, asyncio.Future[_Claimed]] = {}  # claims asked off the loop
        if store is not None:
            self._load(policy)

    # --- persistence -------------------------------------------------------------------------

    def _warn_once(self, message: str) -> None:
        if not self._warned:
            self._warned = True
            self.on_warning(message)

    def _load(self, policy: BreakerPolicy) -> None:
        assert self.store is not None
        try:
            state = self.store.load(self.chain)
        except StateError as exc:
            self._warn_once(f"state not loaded, starting fresh: {exc}")
            return
        self.seed(state, policy)

    def seed(self, state: ChainState, policy: BreakerPolicy) -> None:
        """Take breakers and recent latencies from stored ``state``."""
        for name in self.names:
            ps = state.providers.get(name)
            if ps is None:
                continue
            self.breakers[name] = b = CircuitBreaker(policy, ps.breaker, ps.outcomes)
            self.latencies[name].extend(s.latency_ms for s in ps.samples if s.ok)
            reason = (ps.last_error or {}).get("reason")
            self.last_reason[name] = reason if isinstance(reason, str) else None
            current = self.fingerprints.get(name)
            if current is not None:
                # A verdict about another key or endpoint does not bench this one.
                self._transitioned(name, b.reset_for(self.clock.time(), current))

    def flush_now(self) -> bool:
        """Write pending outcomes to the store (blocking), then give back the probe leases
        whose outcome they hold. False if they could not be written."""
        if self.store is None or (self.pending.is_empty() and not self._ending):
            return True
        delta, self.pending = self.pending, StateDelta(history=self.pending.history)
        ending, self._ending = self._ending, set()
        try:
            merged = self.store.update(self.chain, delta)
        except StateError as exc:
            self._ending |= ending  # kept until written (or they expire)
            self._warn_once(f"outcome not recorded: {exc}")
            return False
        for name in ending:
            self._end_lease(name)
        self.adopt(merged)  # newer breaker decisions made by other processes
        return True

    async def flush(self) -> bool:
        """Write pending outcomes without blocking the event loop. One flush at a time: a
        flush asked for while another runs waits for it, so what was pending when it was
        asked (leases to give back included) is written when it returns."""
        loop = asyncio.get_running_loop()
        if self._flushing is None or self._flushing[0] is not loop:
            self._flushing = (loop, asyncio.Lock())  # a router may outlive one asyncio.run
        async with self._flushing[1]:
            if self.store is None or (self.pending.is_empty() and not self._ending):
                return True
            return await asyncio.to_thread(self.flush_now)

    def adopt(self, state: ChainState) -> None:
        """Take the breaker decisions in ``state`` (as loaded from the store) that are newer
        than this process's."""
        now = self.clock.time()
        for name, ps in state.providers.items():
            b = self.breakers.get(name)
            if b is not None and ps.breaker.updated_at > b.snap.updated_at:
                old = b.state(now)
                b.snap = ps.breaker
                new = b.state(now)
                if new is not old:
                    self.on_transition(name, Transition(old, new, b.snap.open_until))

    # --- admission ---------------------------------------------------------------------------

    def acquire(self, name: str) -> Permit | None:
        """A permit to call ``name``, or None: skip it. A probe needs the fleet's lease."""
        b = self.breakers[name]
        now = self.clock.time()
        permit = b.acquire(now)
        if permit is None or not permit.probe or not self._leasing or name in self._leases:
            return permit
        return self._leased(name, b, permit, now)

    def _leased(self, name: str, b: CircuitBreaker, permit: Permit, now: float) -> Permit | None:
        """``permit`` (a probe) if this process wins ``name``'s probe lease, else None. With
        the lease won, the store is read first: a probe elsewhere may have settled it."""
        loop = _running_loop() if self.claims_off_loop else None
        job = self._claims.get(name) if loop is not None else None
        if job is not None and job.done():  # the answer to a claim made off the loop
            del self._claims[name]
            claimed = job.result()
        elif now < b.remote_probe_until or job is not None:
            b.release(permit)  # held elsewhere, or asked and not answered yet
            return None
        elif loop is not None:
            self._start_claim(loop, name, self._lease_ttl(name), now)
            b.release(permit)
            b.remote_probe_until = now + CLAIM_POLL
            return None
        else:
            claimed = self._claim(name, self._lease_ttl(name), now)
        lease, state = claimed
        if isinstance(lease, StateError):
            self._warn_once(f"probe not shared with other processes: {lease}")
            return permit  # admission as in one process alone
        if not lease.granted:
            b.release(permit)
            b.remote_probe_until = min(lease.expires_at, now + PROBE_LEASE_POLL)
            return None
        self._leases.add(name)
        b.remote_probe_until = 0.0
        if state is None:
            return permit
        b.release(permit)
        self.adopt(state)
        again = b.acquire(now)
        if again is None or not again.probe:
            self._end_lease(name)  # nothing to probe any more
        return again

    def _claim(self, name: str, ttl: float, now: float) -> _Claimed:
        """Ask the store for ``name``'s probe lease and, when won, read the state (None if
        that read fails); a StateError in place of the lease when the store cannot answer."""
        assert self.store is not None
        try:
            lease = self.store.claim_probe(self.chain, name, self.owner, ttl, now)
        except StateError as exc:
            return exc, None
        if not lease.granted:
            return lease, None
        try:
            return lease, self.store.load(self.chain)
        except StateError:
            return lease, None

    def _start_claim(
        self, loop: asyncio.AbstractEventLoop, name: str, ttl: float, now: float
    ) -> None:
        job = loop.run_in_executor(None, self._claim, name, ttl, now)
        self._claims[name] = job

        def answered(done: asyncio.Future[_Claimed]) -> None:
            self._kick(name)  # requests holding off name look again
            loop.call_later(PROBE_LEASE_POLL, self._drop_unused, name, done)

        job.add_done_callback(answered)

    def claim_pending(self, name: str) -> bool:
        """Whether ``name``'s probe-lease claim, made off the loop, awaits the store's answer."""
        job = self._claims.get(name)
        return job is not None and not job.done()

    def _claiming(self, name: str) -> bool:
        """Whether a probe of ``name`` waits for the answer to a lease claim made off the
        loop (asked here when a probe is due and nobody asked yet)."""
        if name in self._leases:
            return False
        job = self._claims.get(name)
        if job is not None:
            return not job.done()
        b = self.breakers[name]
        now = self.clock.time()
        if (
            now < b.remote_probe_until
            or b.state(now) is not BreakerState.HALF_OPEN
            or b.probes_in_flight >= b.policy.half_open_probes
        ):
            return False
        loop = _running_loop()
        if loop is None:
            return False
        self._start_claim(loop, name, self._lease_ttl(name), now)
        return True

    def _lease_ttl(self, name: str) -> float:
        lo, hi = PROBE_LEASE_TTL
        return min(hi, max(lo, self.probe_ttls.get(name, hi)))

    def _drop_unused(self, name: str, job: asyncio.Future[_Claimed]) -> None:
        """Give back a lease won off the loop that no request came to use in time."""
        if self._claims.get(name) is not job:
            return  # used (or asked again)
        del self._claims[name]
        if job.cancelled() or job.exception() is not None:
            return
        lease, _ = job.result()
        if isinstance(lease, StateError) or not lease.granted or self.store is None:
            return
        store, chain, owner = self.store, self.chain, self.owner

        def give_back() -> None:
            try:
                store.end_probe(chain, name, owner)
            except StateError:
                pass  # it expires

        asyncio.get_running_loop().run_in_executor(None, give_back)

    def _end_lease(self, name: str) -> None:
        if name not in self._leases:
            return
        self._leases.discard(name)
        assert self.store is not None
        try:
            self.store.end_probe(self.chain, name, self.owner)
        except StateError:
            self._leases.add(name)  # still ours: the next flush tries again (or it expires)
            self._ending.add(name)

    def _probe_ended(self, name: str, permit: Permit | None, recorded: bool) -> None:
        """A probe under this process's lease is over: give the lease back now, or after the
        flush that stores its outcome."""
        if permit is None or not permit.probe or name not in self._leases:
            return
        if self.breakers[name].probes_in_flight:
            return  # another local probe still holds it
        if recorded:
            self._ending.add(name)
        else:
            self._end_lease(name)

    def release(self, name: str, permit: Permit) -> None:
        self.breakers[name].release(permit)
        self._probe_ended(name, permit, recorded=False)
        self._kick(name)

    def must_wait(self, name: str) -> bool:
        """Whether requests should hold off ``name`` for now: its cold-start scouts are out,
        or its probe lease is being claimed off the loop (see :meth:`changed`)."""
        if self.breakers[name].must_wait():
            return True
        return self.claims_off_loop and self._leasing and self._claiming(name)

    def warm(self, name: str) -> None:
        """``name`` has shown it works before any outcome is recorded (a stream opened)."""
        b = self.breakers[name]
        if b.cold:
            b.warm()
            self._kick(name)

    def changed(self, name: str) -> asyncio.Event:
        """An event set the next time ``name`` records an outcome, gets a permit back or has
        its lease claim answered."""
        ev = self._changed.get(name)
        if ev is None:
            ev = self._changed[name] = asyncio.Event()
        return ev

    def _kick(self, name: str) -> None:
        ev = self._changed.pop(name, None)
        if ev is not None:
            ev.set()

    # --- outcomes ----------------------------------------------------------------------------

    def _delta(self, name: str) -> ProviderDelta:
        """Where this outcome is batched for the store; with no store, a scratch delta that
        is dropped at once (batching for nobody would grow without bound)."""
        return self.pending.provider(name) if self.store is not None else ProviderDelta()

    def _transitioned(self, name: str, t: Transition | None) -> None:
        if t is None:
            return
        self._delta(name).breaker = self.breakers[name].snap
        self.on_transition(name, t)

    def on_success(
        self,
        name: str,
        permit: Permit | None,
        latency_ms: float,
        ttft_ms: float | None = None,
        tokens: int = 0,
    ) -> None:
        now = self.clock.time()
        b = self.breakers[name]
        t = b.on_success(now, permit, latency_ms)
        self.latencies[name].append(latency_ms)
        self.last_reason[name] = None
        if self.store is not None:  # else nobody would read the batch
            d = self.pending.provider(name)
            d.requests += 1
            d.successes += 1
            d.outcomes.append(b.outcomes[-1])
            d.samples.append(Sample(now, latency_ms, ttft_ms, tokens, True))
        if t is not None:
            self._transitioned(name, t)
        if self._leases:
            self._probe_ended(name, permit, recorded=True)
        if self._changed:
            self._kick(name)

    def on_failure(
        self, name: str, permit: Permit | None, error: ProviderError, duration_ms: float
    ) -> None:
        """Record a failed attempt; what it does to the breaker depends on its class."""
        now = self.clock.time()
        b = self.breakers[name]
        d = self._delta(name)
        d.requests += 1
        cls = error.error_class
        d.failures[cls.value] = d.failures.get(cls.value, 0) + 1
        d.last_error = {
            "at": now,
            "class": cls.value,
            "status": error.status,
            "reason": error.reason,
            "message": error.message[:300],
        }
        self.last_reason[name] = error.reason
        if cls in (ErrorClass.TRANSIENT, ErrorClass.PROVIDER):
            severe = cls is ErrorClass.PROVIDER
            fp = self.fingerprints.get(name) if severe else None
            t = b.on_failure(now, permit, severe=severe, fingerprint=fp)
            d.outcomes.append(b.outcomes[-1])
            d.samples.append(Sample(now, duration_ms, None, 0, False))
            self._transitioned(name, t)
            self._probe_ended(name, permit, recorded=True)
        elif permit is not None:
            b.release(permit)
            self._probe_ended(name, permit, recorded=False)
        self._kick(name)

    def unreachable(self, name: str) -> bool:
        """Whether ``name``'s last failure said nothing listens there (a refused or timed-out
        connection): not worth queueing for unless the caller asked to wait."""
        return self.last_reason.get(name) == "connect"

    def on_ratelimit(self, name: str, ratelimit: RateLimit) -> None:
        """Record what ``name`` last reported in its rate-limit headers (shown by status)."""
        if self.store is None:
            return
        self.pending.provider(name).last_ratelimit = {
            "at": self.clock.time(),
            "remaining_requests": ratelimit.remaining_requests,
            "remaining_tokens": ratelimit.remaining_tokens,
            "requests_reset_at": ratelimit.requests_reset_at,
            "tokens_reset_at": ratelimit.tokens_reset_at,
        }

    def hold_until(self, name: str, until: float) -> None:
        self._transitioned(name, self.breakers[name].hold_until(self.clock.time(), until))

    def on_health(self, result: HealthResult) -> None:
        """A passing check moves an open breaker to half-open; a failing one opens or
        extends it by one cooldown. Checks that could not run (no key) change nothing."""
        name = result.provider
        b = self.breakers.get(name)
        if b is None:
            return
        now = self.clock.time()
        self._delta(name).last_health = {
            "at": now,
            "ok": result.ok,
            "latency_ms": round(result.latency_ms, 3),
            "error": result.error,
        }
        if b.snap.forced is not None or result.error_class is ErrorClass.REQUEST:
            return
        old = b.state(now)
        if result.ok:
            if old.value == "open":
                b.snap = replace(b.snap, open_until=now, updated_at=now)
                self._transitioned(name, Transition(old, b.state(now), now))
        elif result.status is not None or result.error_class is ErrorClass.TRANSIENT:
            cooldown = b.snap.cooldown or b.policy.cooldown
            self._transitioned(name, b.hold_until(now, now + cooldown))

    def force(self, name: str, mode: str | None) -> None:
        t = self.breakers[name].force(self.clock.time(), mode)
        self._delta(name).breaker = self.breakers[name].snap
        if t.old is not t.new:
            self.on_transition(name, t)

    # --- reading -----------------------------------------------------------------------------

    def stats(self, name: str, price: float | None) -> ProviderStats:
        calls, failures = self.breakers[name].window_counts(self.clock.time())
        return ProviderStats(name, tuple(self.latencies[name]), calls, calls - failures, price)

    def scores(
        self, prices: Mapping[str, float | None], weights: Weights
    ) -> dict[str, ScoreBreakdown]:
        """Every provider's score now, from its recent latencies and window outcomes."""
        return score_all([self.stats(n, prices.get(n)) for n in self.names], weights)


_Claimed = tuple["ProbeLease | StateError", "ChainState | None"]


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
