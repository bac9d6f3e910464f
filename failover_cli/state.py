"""What persists between invocations, how a batch of new outcomes merges into it, and its
JSON-ready form. Pure data: the stores in :mod:`failover_cli.store` do the I/O.

Merging is exact for counters and histories, so processes that update one store concurrently
lose nothing; for the breaker snapshot the most recent change wins, and of two open deadlines
the later one.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection
from dataclasses import field, fields, replace
from typing import Any, NamedTuple

from .breaker import MAX_OUTCOMES, BreakerSnapshot
from .records import slotted

SCHEMA_VERSION = 1
DEFAULT_HISTORY = 500


class Sample(NamedTuple):
    """One completed request: when, how long, time to first token, output tokens, outcome.

    A NamedTuple: states hold thousands, and it decodes ~2.4x faster than a frozen dataclass.
    """

    t: float
    latency_ms: float
    ttft_ms: float | None = None
    tokens: int = 0
    ok: bool = True

    def to_list(self) -> list[Any]:
        ttft = None if self.ttft_ms is None else round(self.ttft_ms, 3)
        return [self.t, round(self.latency_ms, 3), ttft, self.tokens, self.ok]

    @classmethod
    def from_list(cls, v: list[Any]) -> Sample:
        t, lat, ttft, tokens, ok = v
        return cls(
            float(t), float(lat), None if ttft is None else float(ttft), int(tokens), bool(ok)
        )


@slotted
class ProviderState:
    breaker: BreakerSnapshot = field(default_factory=BreakerSnapshot)
    outcomes: list[tuple[float, bool]] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    requests: int = 0
    successes: int = 0
    failures: dict[str, int] = field(default_factory=dict)  # by error class
    last_error: dict[str, Any] | None = None  # {"at", "class", "status", "message"} (scrubbed)
    last_health: dict[str, Any] | None = None  # {"at", "ok", "latency_ms", "error"}
    # What the provider last reported in its rate-limit headers (see failover_cli.ratelimit):
    # {"at", "remaining_requests", "remaining_tokens", "reset_at"}.
    last_ratelimit: dict[str, Any] | None = None
    # USD spent through this provider, by UTC period: "YYYY-MM-DD" (a day), "YYYY-MM" (a
    # month); only the latest day and month are kept (see failover_cli.budget).
    spend: dict[str, float] = field(default_factory=dict)

    @property
    def consecutive_failures(self) -> int:
        n = 0
        for t, ok in reversed(self.outcomes):
            if ok or t < self.breaker.since:
                break
            n += 1
        return n

    def to_dict(self) -> dict[str, Any]:
        return {
            "breaker": self.breaker.to_dict(),
            "consecutive_failures": self.consecutive_failures,  # derived; ignored on load
            "outcomes": [[t, ok] for t, ok in self.outcomes],
            "samples": [s.to_list() for s in self.samples],
            "requests": self.requests,
            "successes": self.successes,
            "failures": dict(self.failures),
            "last_error": self.last_error,
            "last_health": self.last_health,
            "last_ratelimit": self.last_ratelimit,
            **({"spend": dict(self.spend)} if self.spend else {}),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ProviderState:
        """Decode a stored provider; ValueError (or another of :data:`DECODE_ERRORS`) if any
        value is malformed, a non-finite number included."""
        outcomes = [(float(t), bool(ok)) for t, ok in d.get("outcomes") or []]
        samples = [Sample.from_list(s) for s in d.get("samples") or []]
        if not _histories_finite(outcomes, samples):
            raise ValueError("a non-finite number in the history")
        return cls(
            breaker=snapshot_from_dict(d.get("breaker") or {}),
            outcomes=outcomes,
            samples=samples,
            requests=int(d.get("requests") or 0),
            successes=int(d.get("successes") or 0),
            failures={str(k): int(v) for k, v in (d.get("failures") or {}).items()},
            last_error=_record(d.get("last_error")),
            last_health=_record(d.get("last_health")),
            last_ratelimit=_record(d.get("last_ratelimit")),
            spend=_spend(d.get("spend")),
        )


# --- spend: USD by period, added up exactly like the counters ----------------------------------

MAX_PERIODS = 64  # entries a stored or journalled spend may have (five are kept after a merge)
KEPT_DAYS = 3  # days of spend kept per provider: today, and room for a clock that runs ahead
KEPT_MONTHS = 2
MAX_SPEND = 1e12  # USD: a sum is capped here, so no merge of finite amounts makes infinity
_PERIOD = re.compile(r"\d{4}-\d{2}(?:-\d{2})?")


def _spend(value: Any) -> dict[str, float]:
    """A stored spend: {period: USD}; ValueError unless every key is a period and every
    amount a finite number >= 0 (a NaN would never compare over a limit)."""
    if value is None:
        return {}
    if not isinstance(value, dict) or len(value) > MAX_PERIODS:
        raise ValueError("'spend' is not an object of periods")
    out: dict[str, float] = {}
    for k, v in value.items():
        if not isinstance(k, str) or not _PERIOD.fullmatch(k):
            raise ValueError(f"'spend' has a key that is not a period: {str(k)[:20]!r}")
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise ValueError("'spend' has an amount that is not a number")
        usd = float(v)
        if not math.isfinite(usd) or usd < 0:
            raise ValueError("'spend' has a negative or non-finite amount")
        out[k] = usd
    return out


def _finite_spend(spend: dict[str, float]) -> dict[str, float]:
    """``spend`` without non-finite, negative or malformed entries."""
    if all(
        isinstance(v, float | int) and math.isfinite(v) and v >= 0 and _PERIOD.fullmatch(k)
        for k, v in spend.items()
    ):
        return spend
    return {
        k: float(v)
        for k, v in spend.items()
        if isinstance(v, float | int) and math.isfinite(v) and v >= 0 and _PERIOD.fullmatch(k)
    }


def merge_spend(old: dict[str, float], new: dict[str, float]) -> dict[str, float]:
    """Amounts of the same period add up; then only the latest :data:`KEPT_DAYS` days and
    :data:`KEPT_MONTHS` months are kept (older periods expire as the clock moves on)."""
    if not new:
        return dict(old)
    total = dict(old)
    for k, v in new.items():
        total[k] = min(total.get(k, 0.0) + v, MAX_SPEND)  # never overflows to infinity
    # The newest few of each: one host whose clock runs ahead adds a future period, which
    # must not push out the one the others are spending in now.
    days = sorted((k for k in total if len(k) == 10), reverse=True)[:KEPT_DAYS]
    months = sorted((k for k in total if len(k) == 7), reverse=True)[:KEPT_MONTHS]
    return {k: total[k] for k in (*days, *months)}


# --- finite numbers: NaN or an infinity must never be loaded, merged or written ---------------


def _histories_finite(outcomes: list[tuple[float, bool]], samples: list[Sample]) -> bool:
    """Whether every time and latency is finite: one sum, since NaN and infinities spread."""
    total = sum([t for t, _ in outcomes]) + sum(
        [s.t + s.latency_ms + (s.ttft_ms or 0.0) for s in samples]
    )
    return math.isfinite(total)


def _snapshot_finite(b: BreakerSnapshot) -> bool:
    return math.isfinite(sum(v for v in b.to_dict().values() if isinstance(v, float)))


def snapshot_from_dict(d: dict[str, Any]) -> BreakerSnapshot:
    """A stored breaker snapshot; ValueError if a deadline or time is not finite (an
    ``open_until`` of Infinity would hold the provider open for ever)."""
    b = BreakerSnapshot.from_dict(d)
    if not _snapshot_finite(b):
        raise ValueError("a non-finite number in the breaker")
    return b


def finite_snapshot(b: BreakerSnapshot) -> BreakerSnapshot:
    """``b`` with every non-finite number set back to its field's default (a deadline to
    none: the breaker then probes)."""
    if _snapshot_finite(b):
        return b
    fixed: dict[str, Any] = {
        f.name: f.default
        for f in fields(b)
        if isinstance(v := getattr(b, f.name), float) and not math.isfinite(v)
    }
    return replace(b, **fixed)


_MAX_DEPTH = 32


def finite_json(value: Any, depth: int = 0) -> Any:
    """``value`` (plain JSON data) with each non-finite float replaced by None; the very
    same object when there is none. ValueError if nested deeper than a record can be."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if depth > _MAX_DEPTH:
        raise ValueError("nested too deeply")
    if isinstance(value, dict):
        items = {k: finite_json(v, depth + 1) for k, v in value.items()}
        same = all(items[k] is v for k, v in value.items())
        return value if same else items
    if isinstance(value, list):
        out = [finite_json(v, depth + 1) for v in value]
        return value if all(a is b for a, b in zip(out, value, strict=True)) else out
    return value


def _record(value: Any) -> dict[str, Any] | None:
    """A stored ``last_error``/``last_health``/``last_ratelimit``: an object (whose ``at`` is
    a number) or nothing; anything else would break the next merge, which compares ``at``.
    Non-finite numbers in it become None."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ValueError(f"expected an object, got {type(value).__name__}")
    at = value.get("at")
    if at is not None and (isinstance(at, bool) or not isinstance(at, int | float)):
        raise ValueError("'at' is not a number")
    return finite_json(value)


@slotted
class ChainState:
    """Everything stored for one chain (one configuration), by provider name."""

    providers: dict[str, ProviderState] = field(default_factory=dict)

    def provider(self, name: str) -> ProviderState:
        return self.providers.get(name) or ProviderState()

    def to_dict(self) -> dict[str, Any]:
        return {"providers": {n: p.to_dict() for n, p in self.providers.items()}}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ChainState:
        return cls(
            {str(n): ProviderState.from_dict(p) for n, p in (d.get("providers") or {}).items()}
        )


@slotted
class ProviderDelta:
    """What one process learned about one provider since its last flush."""

    requests: int = 0
    successes: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    outcomes: list[tuple[float, bool]] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    breaker: BreakerSnapshot | None = None  # set when this process changed the breaker
    last_error: dict[str, Any] | None = None
    last_health: dict[str, Any] | None = None
    last_ratelimit: dict[str, Any] | None = None
    spend: dict[str, float] = field(default_factory=dict)  # USD to add, by period

    def is_empty(self) -> bool:
        return not (
            self.requests
            or self.successes
            or self.failures
            or self.outcomes
            or self.samples
            or self.breaker
            or self.last_error
            or self.last_health
            or self.last_ratelimit
            or self.spend
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "successes": self.successes,
            "failures": dict(self.failures),
            "outcomes": [[t, ok] for t, ok in self.outcomes],
            "samples": [s.to_list() for s in self.samples],
            "breaker": self.breaker.to_dict() if self.breaker else None,
            "last_error": self.last_error,
            "last_health": self.last_health,
            "last_ratelimit": self.last_ratelimit,
            **({"spend": dict(self.spend)} if self.spend else {}),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ProviderDelta:
        """Decode a delta (as journalled); ValueError and the like if it is malformed."""
        b = d.get("breaker")
        outcomes = [(float(t), bool(ok)) for t, ok in d.get("outcomes") or []]
        samples = [Sample.from_list(s) for s in d.get("samples") or []]
        if not _histories_finite(outcomes, samples):
            raise ValueError("a non-finite number in the history")
        return cls(
            requests=int(d.get("requests") or 0),
            successes=int(d.get("successes") or 0),
            failures={str(k): int(v) for k, v in (d.get("failures") or {}).items()},
            outcomes=outcomes,
            samples=samples,
            breaker=snapshot_from_dict(b) if b else None,
            last_error=_record(d.get("last_error")),
            last_health=_record(d.get("last_health")),
            last_ratelimit=_record(d.get("last_ratelimit")),
            spend=_spend(d.get("spend")),
        )

    def finite(self) -> ProviderDelta:
        """This delta without non-finite numbers: such history entries are dropped, breaker
        times reset to their defaults, record values set to None, spend amounts dropped."""
        outcomes = [o for o in self.outcomes if math.isfinite(o[0])]
        samples = [s for s in self.samples if _histories_finite([], [s])]
        return replace(
            self,
            outcomes=outcomes if len(outcomes) < len(self.outcomes) else self.outcomes,
            samples=samples if len(samples) < len(self.samples) else self.samples,
            breaker=None if self.breaker is None else finite_snapshot(self.breaker),
            last_error=_finite_record(self.last_error),
            last_health=_finite_record(self.last_health),
            last_ratelimit=_finite_record(self.last_ratelimit),
            spend=_finite_spend(self.spend),
        )


def _finite_record(value: dict[str, Any] | None) -> dict[str, Any] | None:
    return None if value is None else finite_json(value)


@slotted
class StateDelta:
    """A batch of updates for one chain, keyed by provider name."""

    providers: dict[str, ProviderDelta] = field(default_factory=dict)
    history: int = DEFAULT_HISTORY  # bound on stored latency samples per provider

    def provider(self, name: str) -> ProviderDelta:
        d = self.providers.get(name)
        if d is None:
            d = self.providers[name] = ProviderDelta()
        return d

    def is_empty(self) -> bool:
        return all(d.is_empty() for d in self.providers.values())


def merge_breaker(old: BreakerSnapshot, new: BreakerSnapshot | None) -> BreakerSnapshot:
    """The most recent change wins; of two open deadlines, the later one."""
    if new is None:
        return old
    if new.updated_at < old.updated_at:
        newer, older = old, new
    else:
        newer, older = new, old
    if (
        newer.state == "open"
        and older.state == "open"
        and newer.forced is None
        and (older.open_until or 0) > (newer.open_until or 0)
    ):
        return replace(newer, open_until=older.open_until)
    return newer


def _newer(old: dict[str, Any] | None, new: dict[str, Any] | None) -> dict[str, Any] | None:
    if new is None:
        return old
    if old is None or float(new.get("at") or 0) >= float(old.get("at") or 0):
        return new
    return old


def merge_provider(
    state: ProviderState, delta: ProviderDelta, history: int = DEFAULT_HISTORY
) -> ProviderState:
    """Return ``state`` with ``delta`` merged in (``state`` is not modified). Non-finite
    numbers in ``delta`` are dropped or reset (see :meth:`ProviderDelta.finite`), so merged
    state can always be written as strict JSON."""
    delta = delta.finite()
    failures = dict(state.failures)
    for k, v in delta.failures.items():
        failures[k] = failures.get(k, 0) + v
    outcomes = sorted(state.outcomes + delta.outcomes, key=lambda o: o[0])[-MAX_OUTCOMES:]
    samples = state.samples + delta.samples
    if delta.samples and state.samples and delta.samples[0].t < state.samples[-1].t:
        samples.sort(key=lambda s: s.t)
    return ProviderState(
        breaker=merge_breaker(state.breaker, delta.breaker),
        outcomes=outcomes,
        samples=samples[-history:] if history > 0 else [],
        requests=state.requests + delta.requests,
        successes=state.successes + delta.successes,
        failures=failures,
        last_error=_newer(state.last_error, delta.last_error),
        last_health=_newer(state.last_health, delta.last_health),
        last_ratelimit=_newer(state.last_ratelimit, delta.last_ratelimit),
        spend=merge_spend(state.spend, delta.spend),
    )


def forget(state: ChainState, providers: Collection[str] | None = None) -> ChainState:
    """``state`` without the breakers, counters and history of ``providers`` (all: None).
    Their spend is kept: a reset of a breaker must not reopen a budget."""
    names = set(state.providers) if providers is None else set(providers)
    kept: dict[str, ProviderState] = {}
    for name, p in state.providers.items():
        if name not in names:
            kept[name] = p
        elif p.spend:
            kept[name] = ProviderState(spend=dict(p.spend))
    return ChainState(kept)


def merge(state: ChainState, delta: StateDelta) -> ChainState:
    """Return ``state`` with every provider's delta merged in."""
    providers = dict(state.providers)
    for name, d in delta.providers.items():
        providers[name] = merge_provider(state.provider(name), d, delta.history)
    return ChainState(providers)


# --- the stored document: {"schema": N, "chains": {chain: ChainState}} ------------------------


class ForeignDocument(ValueError):
    """The data is not a failover state document (or is corrupt)."""


class FutureSchema(ValueError):
    """The document was written by a newer failover; it must not be overwritten."""


# Forward migrations: MIGRATIONS[n] turns a schema-n document into a schema-(n+1) one.
MIGRATIONS: dict[int, Any] = {}


# What decoding a malformed stored value can raise (OverflowError: JSON 1e400 given to int()).
DECODE_ERRORS = (TypeError, ValueError, KeyError, AttributeError, OverflowError)


def schema_of(doc: Any) -> int:
    """The schema version of a stored document (or Redis value): ForeignDocument if it has
    none, FutureSchema if a newer failover wrote it, whatever its shape."""
    version = doc.get("schema") if isinstance(doc, dict) else None
    if not isinstance(version, int) or isinstance(version, bool):
        raise ForeignDocument("not a failover state document")
    if version > SCHEMA_VERSION:
        raise FutureSchema(f"state schema {version} is newer than this failover ({SCHEMA_VERSION})")
    return version


def migrate(doc: Any) -> dict[str, Any]:
    """Validate the envelope and bring a document up to :data:`SCHEMA_VERSION`."""
    version = schema_of(doc)
    if not isinstance(doc.get("chains"), dict):
        raise ForeignDocument("not a failover state document")
    while version < SCHEMA_VERSION:
        step = MIGRATIONS.get(version)
        if step is None:
            raise ForeignDocument(f"no migration from state schema {version}")
        doc = step(doc)
        version = doc["schema"]
    return doc


def decode_chain(value: Any) -> ChainState:
    """One stored chain; ForeignDocument (with the reason) if it is malformed."""
    if not isinstance(value, dict):
        raise ForeignDocument(f"expected an object, got {type(value).__name__}")
    providers = value.get("providers", {})
    if not isinstance(providers, dict):
        raise ForeignDocument("'providers' is not an object")
    try:
        return ChainState.from_dict(value)
    except (*DECODE_ERRORS, RecursionError) as exc:
        raise ForeignDocument(" ".join(str(exc).split()) or type(exc).__name__) from None


class Decoded(NamedTuple):
    """A stored document's usable chains, and why each other one was dropped."""

    chains: dict[str, ChainState]
    malformed: dict[str, str]


def decode_document(doc: Any) -> Decoded:
    """Decode a stored document chain by chain: a malformed chain is dropped (and named in
    ``malformed``) while the others load. ForeignDocument/FutureSchema if the envelope
    itself is unusable."""
    doc = migrate(doc)
    chains: dict[str, ChainState] = {}
    malformed: dict[str, str] = {}
    for name, value in doc["chains"].items():
        try:
            chains[str(name)] = decode_chain(value)
        except ForeignDocument as exc:
            malformed[str(name)] = str(exc)
    return Decoded(chains, malformed)


def load_document(doc: Any) -> dict[str, ChainState]:
    """The usable chains of a stored document (malformed ones dropped: see
    :func:`decode_document`); raise ForeignDocument/FutureSchema if the envelope is unusable."""
    return decode_document(doc).chains


def dump_document(chains: dict[str, ChainState]) -> dict[str, Any]:
    return {"schema": SCHEMA_VERSION, "chains": {n: c.to_dict() for n, c in chains.items()}}
