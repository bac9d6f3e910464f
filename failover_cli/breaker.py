"""A per-provider circuit breaker: a pure state machine. Time is passed in; nothing sleeps.

closed --(N consecutive failures, or failure rate >= R over the window with >= M calls)--> open
open --(cooldown elapsed)--> half_open   (derived from the wall clock, so it survives restarts)
half_open --(probe succeeds)--> closed;  --(probe fails)--> open again, for a cooldown that
    grows with the outage: ``cooldown_ratio`` of the time it has been down, at least
    ``cooldown`` and at most ``max_cooldown``. A provider that recovers is then back within
    one base cooldown of a young outage (or that share of a long one), while one that stays
    down is probed ever more rarely.

Deadlines are wall-clock epoch seconds; a later deadline always wins, so a short Retry-After
never shortens a longer cooldown. Half-open admits at most ``half_open_probes`` probes at once
(in this process); the rest skip the provider. Processes sharing a store also take a fleet-wide
:class:`ProbeLease` first (see :class:`failover_cli.tracker.Tracker`): while another process
holds it, :attr:`CircuitBreaker.remote_probe_until` says when to look again.

A breaker with no evidence yet (a fresh process, no stored history) is *cold*: it admits
``failure_threshold`` scouts at once, enough to trip it if the provider is down, and
:meth:`CircuitBreaker.must_wait` tells the caller to hold further requests (for at most
``cold_start_wait`` seconds) until a scout succeeds, a stream opens or the breaker trips. A
burst of first requests then learns from the first failures instead of each paying for a dead
provider.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import replace
from enum import StrEnum

from .records import frozen

# Recent outcomes kept per provider for the failure-rate window and the consecutive count:
# twice resilience4j's default count-based window (100). More only costs state-file parsing.
MAX_OUTCOMES = 200
_LONGEST_HOLD = 86_400.0  # no server's word holds a breaker open for longer than a day


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@frozen
class BreakerPolicy:
    failure_threshold: int = 3
    window: float = 60.0
    failure_rate: float = 0.5
    min_requests: int = 10
    cooldown: float = 30.0
    max_cooldown: float = 600.0
    half_open_probes: int = 1
    slow_call_ms: float | None = None
    cold_start_wait: float = 0.25
    cooldown_ratio: float = 0.25


@frozen
class BreakerSnapshot:
    """The persisted part of a breaker. ``state`` is ``closed`` or ``open``; half-open is
    derived (open and past ``open_until``). ``since`` marks the last close: only outcomes
    after it count towards tripping again."""

    state: str = "closed"
    opened_at: float | None = None
    open_until: float | None = None
    cooldown: float = 0.0
    forced: str | None = None  # "open" | "closed" | None: a manual override
    since: float = 0.0
    updated_at: float = 0.0
    # Set when a provider-class failure (auth, quota, unknown model) opened the breaker: the
    # fingerprint of the endpoint, model and key it failed with. Another fingerprint (a fixed
    # key, a new URL) is another provider as far as that verdict goes.
    fingerprint: str | None = None
    # When the current outage began (the close -> open transition); kept across re-opens so a
    # failed probe can size the next cooldown by how long the provider has been down.
    down_since: float | None = None

    def to_dict(self) -> dict[str, object]:
        return {
            "state": self.state,
            "opened_at": self.opened_at,
            "open_until": self.open_until,
            "cooldown": self.cooldown,
            "forced": self.forced,
            "since": self.since,
            "updated_at": self.updated_at,
            "fingerprint": self.fingerprint,
            "down_since": self.down_since,
        }

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> BreakerSnapshot:
        state = str(d.get("state", "closed"))
        forced = d.get("forced")
        fingerprint = d.get("fingerprint")
        return cls(
            state=state if state in ("closed", "open") else "closed",
            opened_at=_opt_float(d.get("opened_at")),
            open_until=_opt_float(d.get("open_until")),
            cooldown=float(d.get("cooldown") or 0.0),  # type: ignore[arg-type]
            forced=forced if forced in ("open", "closed") else None,
            since=float(d.get("since") or 0.0),  # type: ignore[arg-type]
            updated_at=float(d.get("updated_at") or 0.0),  # type: ignore[arg-type]
            fingerprint=fingerprint if isinstance(fingerprint, str) else None,
            down_since=_opt_float(d.get("down_since")),
        )


def _opt_float(v: object) -> float | None:
    return None if v is None else float(v)  # type: ignore[arg-type]


@frozen
class Permit:
    """Admission to call a provider once. A probe permit holds a half-open slot; a scout
    permit holds one of a cold breaker's first slots."""

    probe: bool = False
    spell: float | None = None  # opened_at of the open spell a probe tests
    scout: bool = False


@frozen
class ProbeLease:
    """A store's answer to a claim of a provider's half-open probe for the whole fleet:
    ``granted`` to the claimant, else held by ``holder``; either way it lapses at
    ``expires_at`` (epoch seconds) unless ended first."""

    granted: bool
    holder: str
    expires_at: float


@frozen
class Transition:
    old: BreakerState
    new: BreakerState
    open_until: float | None


class CircuitBreaker:
    """State machine for one provider. Every method takes ``now`` (epoch seconds)."""

    def __init__(
        self,
        policy: BreakerPolicy | None = None,
        snapshot: BreakerSnapshot | None = None,
        outcomes: Iterable[tuple[float, bool]] = (),
    ) -> None:
        self.policy = policy or BreakerPolicy()
        self.snap = snapshot or BreakerSnapshot()
        self.outcomes: deque[tuple[float, bool]] = deque(outcomes, maxlen=MAX_OUTCOMES)
        self.probes_in_flight = 0
        self.shown_working = False  # set by warm(): not an outcome, and not persisted
        self.scouts_in_flight = 0
        # Another process holds the fleet's probe lease: not asked again before then.
        self.remote_probe_until = 0.0

    # --- reading -----------------------------------------------------------------------------

    def state(self, now: float) -> BreakerState:
        if self.snap.forced == "open":
            return BreakerState.OPEN
        if self.snap.forced == "closed":
            return BreakerState.CLOSED
        if self.snap.state == "open":
            # No deadline (a hand-edited or damaged snapshot): probe rather than stay open.
            if self.snap.open_until is None or now >= self.snap.open_until:
                return BreakerState.HALF_OPEN
            return BreakerState.OPEN
        return BreakerState.CLOSED

    def consecutive_failures(self) -> int:
        n = 0
        for t, ok in reversed(self.outcomes):
            if ok or t < self.snap.since:
                break
            n += 1
        return n

    def window_counts(self, now: float) -> tuple[int, int]:
        """(calls, failures) within the window since the last close."""
        start = max(now - self.policy.window, self.snap.since)
        calls = failures = 0
        for t, ok in reversed(self.outcomes):
            if t < start:
                break
            calls += 1
            failures += not ok
        return calls, failures

    def next_admission(self, now: float) -> float | None:
        """When this breaker may admit a request again: ``now`` if it does now, the half-open
        time if open, ``None`` if that is not up to time (forced open, or probes in flight)."""
        state = self.state(now)
        if state is BreakerState.CLOSED:
            return now
        if self.snap.forced == "open":
            return None
        if state is BreakerState.OPEN:
            return self.snap.open_until
        if self.probes_in_flight >= self.policy.half_open_probes:
            return None
        return max(now, self.remote_probe_until)

    @property
    def cold(self) -> bool:
        """No evidence either way yet: closed, not forced, fewer outcomes than it takes to
        trip and none of them a success, and no stream has opened."""
        return (
            len(self.outcomes) < self.policy.failure_threshold
            and not self.shown_working
            and self.snap.state == "closed"
            and self.snap.forced is None
            and not any(ok for _, ok in self.outcomes)
        )

    def must_wait(self) -> bool:
        """Whether a new request should wait before calling: the breaker is cold, and its
        scouts in flight with the failures already reported could still trip it."""
        return (
            self.scouts_in_flight + len(self.outcomes) >= self.policy.failure_threshold
            and self.policy.cold_start_wait > 0
            and self.cold
        )

    def warm(self) -> None:
        """The provider has shown it works (a first token, say): stop holding requests."""
        self.shown_working = True

    # --- admission ---------------------------------------------------------------------------

    def acquire(self, now: float) -> Permit | None:
        """Ask to call the provider; ``None`` means skip it. Never waits: callers that honour
        :meth:`must_wait` do so before asking."""
        state = self.state(now)
        if state is BreakerState.CLOSED:
            if (
                self.scouts_in_flight + len(self.outcomes) < self.policy.failure_threshold
                and self.cold
            ):
                self.scouts_in_flight += 1
                return Permit(scout=True)
            return Permit()
        if state is BreakerState.HALF_OPEN and self.probes_in_flight < self.policy.half_open_probes:
            self.probes_in_flight += 1
            return Permit(probe=True, spell=self.snap.opened_at)
        return None

    def release(self, permit: Permit) -> None:
        """Give a permit back without an outcome (request-class error, cancellation)."""
        if permit.probe and self.probes_in_flight > 0:
            self.probes_in_flight -= 1
        elif permit.scout and self.scouts_in_flight > 0:
            self.scouts_in_flight -= 1

    # --- outcomes ----------------------------------------------------------------------------

    def _probes_this_spell(self, permit: Permit | None) -> bool:
        """A probe counts only for the open spell it was admitted in: with several probes,
        the first outcome ends the spell and later ones are ordinary outcomes."""
        return (
            permit is not None
            and permit.probe
            and self.snap.state == "open"
            and permit.spell == self.snap.opened_at
        )

    def on_success(
        self, now: float, permit: Permit | None = None, latency_ms: float | None = None
    ) -> Transition | None:
        slow = self.policy.slow_call_ms
        if slow is not None and latency_ms is not None and latency_ms > slow:
            return self.on_failure(now, permit)
        if permit is not None:
            self.release(permit)
        self.outcomes.append((now, True))
        if self.snap.state == "open" and self.snap.forced is None:
            old = self.state(now)
            # Only a probe (or a health check once half-open) may close an open breaker.
            if old is BreakerState.HALF_OPEN or self._probes_this_spell(permit):
                self.snap = replace(
                    self.snap,
                    state="closed",
                    opened_at=None,
                    open_until=None,
                    cooldown=0.0,
                    since=now,
                    updated_at=now,
                    fingerprint=None,
                    down_since=None,
                )
                return Transition(old, BreakerState.CLOSED, None)
        return None

    def next_cooldown(self, now: float) -> float:
        """The cooldown after a failed probe: ``cooldown_ratio`` of the outage so far,
        within [cooldown, max_cooldown]."""
        p = self.policy
        since = self.snap.down_since if self.snap.down_since is not None else self.snap.opened_at
        down_for = now - since if since is not None else 0.0
        return min(p.max_cooldown, max(p.cooldown, down_for * p.cooldown_ratio))

    def on_failure(
        self,
        now: float,
        permit: Permit | None = None,
        *,
        severe: bool = False,
        fingerprint: str | None = None,
    ) -> Transition | None:
        """Record a failure that counts against this provider. ``severe`` (auth, quota,
        unknown model) opens at once with the longest cooldown, remembering the
        ``fingerprint`` (endpoint, model, key) it was found with."""
        if permit is not None:
            self.release(permit)
        self.outcomes.append((now, False))
        if self.snap.forced is not None:
            return None
        old = self.state(now)
        p = self.policy
        if severe:
            return self._open(now, old, p.max_cooldown, fingerprint=fingerprint)
        if old is BreakerState.HALF_OPEN or self._probes_this_spell(permit):
            return self._open(now, old, self.next_cooldown(now))
        if old is BreakerState.CLOSED:
            calls, failures = self.window_counts(now)
            if self.consecutive_failures() >= p.failure_threshold or (
                calls >= p.min_requests and failures / calls >= p.failure_rate
            ):
                return self._open(now, old, p.cooldown)
        return None

    def hold_until(self, now: float, until: float) -> Transition | None:
        """Keep the provider open until at least ``until`` (a server's Retry-After). The hold
        lasts as long as asked, never shortening a later deadline already in force."""
        if self.snap.forced is not None or not until > now:  # NaN compares false
            return None
        until = min(until, now + _LONGEST_HOLD)
        old = self.state(now)
        cooldown = self.snap.cooldown or self.policy.cooldown
        return self._open(now, old, cooldown, deadline=until)

    def _open(
        self,
        now: float,
        old: BreakerState,
        cooldown: float,
        deadline: float | None = None,
        fingerprint: str | None = None,
    ) -> Transition | None:
        """Open until ``deadline`` (default: ``now + cooldown``); ``cooldown`` is remembered
        for holds and health checks that extend the spell."""
        if deadline is None:
            deadline = now + cooldown
        if self.snap.state == "open" and self.snap.open_until and old is BreakerState.OPEN:
            deadline = max(deadline, self.snap.open_until)  # a later deadline always wins
        opened_at = self.snap.opened_at if old is BreakerState.OPEN else now
        down_since = self.snap.down_since if self.snap.state == "open" else None
        self.snap = replace(
            self.snap,
            state="open",
            opened_at=opened_at,
            open_until=deadline,
            cooldown=cooldown,
            updated_at=now,
            fingerprint=fingerprint
            or (self.snap.fingerprint if old is BreakerState.OPEN else None),
            down_since=down_since if down_since is not None else now,
        )
        new = self.state(now)
        if old is new and old is BreakerState.OPEN:
            return None
        return Transition(old, new, deadline)

    def reset_for(self, now: float, fingerprint: str) -> Transition | None:
        """Close a breaker opened by a provider-class verdict on another fingerprint: the key
        or endpoint it condemned is no longer the one in use."""
        snap = self.snap
        if snap.forced is not None or snap.fingerprint in (None, fingerprint):
            return None
        if snap.state != "open":
            return None
        old = self.state(now)
        self.snap = BreakerSnapshot(since=now, updated_at=now)
        return Transition(old, BreakerState.CLOSED, None)

    # --- manual overrides --------------------------------------------------------------------

    def force(self, now: float, mode: str | None) -> Transition:
        """Force ``open`` or ``closed`` until cleared with ``None`` (which also resets)."""
        if mode not in ("open", "closed", None):
            raise ValueError(f"force mode must be 'open', 'closed' or None, not {mode!r}")
        old = self.state(now)
        if mode is None:
            self.snap = BreakerSnapshot(since=now, updated_at=now)
        else:
            self.snap = replace(self.snap, forced=mode, updated_at=now)
        return Transition(old, self.state(now), self.snap.open_until)
