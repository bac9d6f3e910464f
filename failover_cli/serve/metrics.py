"""Prometheus metrics of the gateway, and the per-request trace of router events.

The router tells its listeners about every attempt, skip and breaker transition; the
:class:`Metrics` listener counts them and also hands each event to the trace of the request
being served (a context variable, so concurrent requests never mix). Breaker states are read
from the router when scraped. Labels are bounded: the chain label is an alias, a provider
name or ``default``, never the client's raw model string.

With several worker processes (``failover serve --workers N``), ``failover serve`` sets
``PROMETHEUS_MULTIPROC_DIR`` before the workers start: every worker writes its counts there
(prometheus_client's multiprocess mode) and a scrape of any worker sums them all, so the
figures do not depend on which worker answered the scrape.
"""

from __future__ import annotations

import contextvars
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from ..breaker import BreakerState
from ..types import (
    AttemptFailed,
    AttemptStarted,
    AttemptSucceeded,
    BreakerTransition,
    Event,
    ProviderSkipped,
    RouteResult,
)

if TYPE_CHECKING:
    from ..router import FailoverRouter

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
BREAKER_VALUES = {BreakerState.CLOSED: 0, BreakerState.HALF_OPEN: 1, BreakerState.OPEN: 2}
MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"  # prometheus_client's: set, workers share counts


@dataclass
class Trace:
    """What the router said while serving one request: the attempts it made, and when each
    provider's latest began."""

    tried: int = 0  # attempts made
    started_at: dict[str, float] = field(default_factory=dict)  # provider: its latest, monotonic
    live: list[str] = field(default_factory=list)  # attempts started, not yet failed

    def note(self, event: Event) -> None:
        if isinstance(event, AttemptStarted):
            self.tried += 1
            self.started_at[event.provider] = time.monotonic()
            self.live.append(event.provider)
        elif isinstance(event, AttemptFailed):
            if event.provider in self.live:
                self.live.remove(event.provider)
        elif isinstance(event, ProviderSkipped) and event.provider in self.live:
            self.live.remove(event.provider)  # started, then found unconfigured (no key)
            self.tried -= 1


CURRENT: contextvars.ContextVar[Trace | None] = contextvars.ContextVar(
    "failover_serve_trace", default=None
)


class _Breakers(Collector):
    """Breaker state of each provider, read from the router at scrape time."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[GaugeMetricFamily]:
        g = GaugeMetricFamily(
            "failover_breaker_state",
            "Breaker state per provider: 0 closed, 1 half-open, 2 open.",
            labels=["provider"],
        )
        router = self.metrics.router
        if router is not None:
            now = router.clock.time()
            for name, breaker in router.tracker.breakers.items():
                g.add_metric([name], BREAKER_VALUES[breaker.state(now)])
        yield g


_CHILDREN_KEPT = 4096  # labelled series a process remembers (the labels are config-bounded)


class Metrics:
    """The gateway's registry, and a router listener feeding it."""

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry(auto_describe=True)
        self.router: FailoverRouter | None = None
        self.requests = Counter(
            "failover_requests", "Requests served.", ["api", "model", "status"], registry=r
        )
        self.attempts = Counter(
            "failover_attempts",
            "Provider attempts by outcome and error class.",
            ["provider", "outcome", "error_class"],
            registry=r,
        )
        self.failovers = Counter(
            "failover_failovers",
            "Attempts that failed and moved on to another provider.",
            ["provider", "error_class"],
            registry=r,
        )
        self.transitions = Counter(
            "failover_breaker_transitions",
            "Breaker transitions.",
            ["provider", "state"],
            registry=r,
        )
        self.latency = Histogram(
            "failover_request_duration_seconds",
            "Whole request latency at the gateway.",
            ["api", "model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            "failover_ttft_seconds",
            "Time to the first streamed token, by the provider that produced it.",
            ["provider"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.tokens = Counter(
            "failover_tokens", "Tokens by provider and direction.", ["provider", "direction"],
            registry=r,
        )  # fmt: skip
        self.cost = Counter("failover_cost_usd", "Cost in USD.", ["provider"], registry=r)
        # Summed over the live workers when they share counts (ignored in one process).
        self.in_flight = Gauge("failover_in_flight", "Requests being served.", registry=r,
                               multiprocess_mode="livesum")  # fmt: skip
        self.queued = Gauge("failover_queued", "Requests waiting for a slot.", registry=r,
                            multiprocess_mode="livesum")  # fmt: skip
        self._breakers = _Breakers(self)
        r.register(self._breakers)
        self._children: dict[tuple[Any, tuple[str, ...]], Any] = {}

    def _child(self, metric: Any, *values: str) -> Any:
        """``metric.labels(*values)``, remembered: prometheus_client takes a lock and checks
        the label values again on every call, several times per request."""
        key = (metric, values)
        child = self._children.get(key)
        if child is None:
            if len(self._children) >= _CHILDREN_KEPT:
                self._children.clear()
            child = self._children[key] = metric.labels(*values)
        return child

    def __call__(self, event: Event) -> None:
        """The router listener."""
        trace = CURRENT.get()
        if trace is not None:
            trace.note(event)
        if isinstance(event, AttemptSucceeded):
            self._child(self.attempts, event.provider, "ok", "").inc()
        elif isinstance(event, AttemptFailed):
            cls = event.error_class.value
            self._child(self.attempts, event.provider, "failed", cls).inc()
            if not event.will_retry:
                self._child(self.failovers, event.provider, cls).inc()
        elif isinstance(event, ProviderSkipped):
            self._child(self.attempts, event.provider, "skipped", "").inc()
        elif isinstance(event, BreakerTransition):
            self._child(self.transitions, event.provider, event.new).inc()

    def observe(
        self, api: str, model: str, status: int, seconds: float, result: RouteResult | None
    ) -> None:
        """Count one finished request."""
        self._child(self.requests, api, model, str(status)).inc()
        self._child(self.latency, api, model).observe(seconds)
        if result is None:
            return
        u = result.usage
        if u.input_tokens:
            self._child(self.tokens, result.provider, "input").inc(u.input_tokens)
        if u.output_tokens:
            self._child(self.tokens, result.provider, "output").inc(u.output_tokens)
        if result.cost:
            self._child(self.cost, result.provider).inc(result.cost)
        if result.ttft_ms is not None:
            self._child(self.ttft, result.provider).observe(result.ttft_ms / 1000)

    def render(self, admission: Any = None) -> bytes:
        """The exposition: this process's registry, or every worker's counts summed (see the
        module docstring); breaker states are this worker's view of the shared store."""
        if admission is not None:
            self.in_flight.set(admission.active)
            self.queued.set(admission.waiting)
        path = os.environ.get(MULTIPROCESS_ENV)
        if not path:
            return generate_latest(self.registry)
        _forget_dead_workers(path)
        shared = CollectorRegistry()
        multiprocess.MultiProcessCollector(shared, path)
        shared.register(self._breakers)
        return generate_latest(shared)


def _forget_dead_workers(path: str) -> None:
    """Drop the live-summed gauges of worker processes that no longer run (killed or
    crashed; uvicorn's supervisor, which restarts them, offers no hook to do it then)."""
    for name in os.listdir(path):
        if not name.startswith("gauge_live") or not name.endswith(".db"):
            continue
        pid = name.removesuffix(".db").rpartition("_")[2]
        if pid.isdigit() and not _alive(int(pid)):
            multiprocess.mark_process_dead(int(pid), path)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True
