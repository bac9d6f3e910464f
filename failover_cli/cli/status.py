"""``failover status``: breakers, latency, success rate and scores from the saved state (no
network), and the manual overrides (``--reset``, ``--open``, ``--close``).

:func:`status_report` is the documented, JSON-ready view of the persisted state that
``status --json`` prints as is and the status table renders. Schema (``providers`` in chain
order; extra keys may be added, none removed)::

    {"chain": str, "generated_at": float,
     "providers": [{"name", "kind", "model", "state": "closed|open|half_open", "forced",
                    "cooldown_remaining_s", "open_until", "consecutive_failures",
                    "requests", "successes", "failures", "failures_by_class",
                    "success_rate", "latency_ms": {"p50", "p95", "p99"}, "ttft_ms": {"p50"},
                    "score", "score_breakdown": {"latency", "reliability", "cost", "total"},
                    "last_error", "last_health", "last_ratelimit", "sparkline_ms": [float]}],
     "budget": {"day": "YYYY-MM-DD", "month": "YYYY-MM", "daily_usd", "monthly_usd",
                "spent_today_usd", "spent_month_usd",
                "providers": {name: {"daily_usd", "monthly_usd", "spent_today_usd",
                                     "spent_month_usd"}}}}

``budget`` is there only when a budget is configured; its periods are UTC, a limit that is
not set is null, and the chain's spend counts every provider that spent (a provider since
removed from the chain included).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .exits import BadOption, handled
from .output import clean, print_json, say, warn
from .wiring import check_names, close_store, load_config, open_store, state_location

if TYPE_CHECKING:
    from ..config import Config
    from ..protocols import StateStore
    from ..state import ChainState

SPARKLINE_POINTS = 24  # most recent successful latencies shown in the sparkline


def run_status(
    *,
    name: str | None,
    json_out: bool,
    reset: bool,
    open_name: str | None,
    close_name: str | None,
    config: str | None,
    state: str | None,
    boxed: bool = False,
) -> None:
    """Apply the overrides given, then print the report (see ``failover status --help``)."""
    with handled():
        if name is not None and not reset:
            raise BadOption("NAME is only used with --reset", "NAME")
        cfg = load_config(config)
        check_names(cfg, [n for n in (name, open_name, close_name) if n], "NAME")
        store = open_store(state_location(state, cfg))
        try:
            _change_state(cfg, store, reset, name, open_name, close_name)
            report = _load_report(cfg, store)
        finally:
            close_store(store)
        if json_out:
            print_json(report)
        else:
            from .render import make_console, print_table, status_details, status_table

            out = make_console(stderr=False)
            report = clean(report, finite=False)
            table = status_table(report, out.width)
            spend = [budget_table(report["budget"], out.width)] if "budget" in report else []
            print_table(out, table, *spend, status_details(report), boxed=boxed, end="")


def _change_state(
    cfg: Config,
    store: StateStore | None,
    reset: bool,
    name: str | None,
    open_name: str | None,
    close_name: str | None,
) -> None:
    from ..clock import SYSTEM_CLOCK
    from ..errors import StateError
    from ..tracker import Tracker

    if not (reset or open_name or close_name):
        return
    if store is None:
        raise StateError("the state store is unavailable: nothing was changed")
    if reset:
        store.reset(cfg.chain, [name] if name else None)
        say("note", f"state of {name or 'every provider'} reset")
    for who, mode in ((open_name, "open"), (close_name, None)):
        if who is None:
            continue
        tracker = Tracker(
            [p.name for p in cfg.providers],
            cfg.breaker,
            SYSTEM_CLOCK,
            store=store,
            chain=cfg.chain,
            history=cfg.state.history,
            on_warning=warn,
        )
        tracker.force(who, mode)
        if not tracker.flush_now():
            raise StateError(f"could not save the breaker of {who}")
        verb = "forced open (until --close)" if mode == "open" else "closed"
        say("note", f"{who}: breaker {verb}")


def _load_report(cfg: Config, store: StateStore | None) -> dict[str, Any]:
    import time

    from ..errors import StateError
    from ..state import ChainState

    chain_state = ChainState()
    if store is not None:
        try:
            chain_state = store.load(cfg.chain)
        except StateError as exc:
            warn(f"state not loaded: {exc}")
    return status_report(cfg, chain_state, time.time())


# --- the report ---------------------------------------------------------------------------------


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def status_report(
    config: Config, state: ChainState, now: float, env: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Every provider of ``config``'s chain, as ``failover status --json`` documents it.
    A provider-class verdict about another key or endpoint than ``env`` gives now is shown
    as the router would treat it: closed."""
    from ..breaker import BreakerState
    from ..clock import VirtualClock
    from ..config import fingerprint
    from ..scoring import percentile
    from ..tracker import Tracker

    env = os.environ if env is None else env
    prints = {p.name: fingerprint(p, env) for p in config.providers}
    tracker = Tracker(
        [p.name for p in config.providers], config.breaker, VirtualClock(now), fingerprints=prints
    )
    tracker.seed(state, config.breaker)
    scores = tracker.scores(config.prices(), config.routing.weights)

    rows = []
    for p in config.providers:
        ps = state.provider(p.name)
        b = tracker.breakers[p.name]
        current = b.state(now)
        ok_samples = [s for s in ps.samples if s.ok]
        latencies = [s.latency_ms for s in ok_samples]
        ttfts = [s.ttft_ms for s in ok_samples if s.ttft_ms is not None]
        failures = sum(ps.failures.values())
        remaining: float | None = 0.0
        if current is BreakerState.OPEN:
            until = b.snap.open_until if b.snap.forced is None else None
            remaining = None if until is None else round(max(0.0, until - now), 1)
        rows.append(
            {
                "name": p.name,
                "kind": p.kind,
                "model": p.model,
                "state": current.value,
                "forced": b.snap.forced,
                "cooldown_remaining_s": remaining,
                "open_until": b.snap.open_until if current is not BreakerState.CLOSED else None,
                "consecutive_failures": ps.consecutive_failures,
                "requests": ps.requests,
                "successes": ps.successes,
                "failures": failures,
                "failures_by_class": dict(sorted(ps.failures.items())),
                "success_rate": round(ps.successes / ps.requests, 4) if ps.requests else None,
                "latency_ms": {
                    "p50": _ms(percentile(latencies, 50)),
                    "p95": _ms(percentile(latencies, 95)),
                    "p99": _ms(percentile(latencies, 99)),
                },
                "ttft_ms": {"p50": _ms(percentile(ttfts, 50))},
                "score": round(scores[p.name].total, 4),
                "score_breakdown": scores[p.name].to_dict(),
                "last_error": ps.last_error,
                "last_health": ps.last_health,
                "last_ratelimit": ps.last_ratelimit,
                "sparkline_ms": [round(v, 1) for v in latencies[-SPARKLINE_POINTS:]],
            }
        )
    report: dict[str, Any] = {
        "chain": config.chain,
        "generated_at": round(now, 3),
        "providers": rows,
    }
    if config.budget.enabled:
        report["budget"] = budget_report(config, state, now)
    return report


# --- the budget ---------------------------------------------------------------------------------


def budget_report(config: Config, state: ChainState, now: float) -> dict[str, Any]:
    """Spend against the budget today and this month (UTC), for the chain and each provider."""
    from ..budget import Spend, periods

    day, month = periods(now)
    spend = Spend({n: p.spend for n, p in state.providers.items()})
    b = config.budget

    def entry(
        daily: float | None, monthly: float | None, today: float, this_month: float
    ) -> dict[str, Any]:
        return {
            "daily_usd": daily,
            "monthly_usd": monthly,
            "spent_today_usd": round(today, 6),
            "spent_month_usd": round(this_month, 6),
        }

    providers = {}
    for p in config.providers:
        own = b.providers.get(p.name)
        providers[p.name] = entry(
            own.daily_usd if own else None,
            own.monthly_usd if own else None,
            spend.provider(p.name, day),
            spend.provider(p.name, month),
        )
    return {
        "day": day,
        "month": month,
        **entry(b.daily_usd, b.monthly_usd, spend.chain(day), spend.chain(month)),
        "providers": providers,
    }


def budget_table(budget: Mapping[str, Any], width: int | None) -> Any:
    """The spend table: the chain, then each provider; ``$spent of $limit`` where limited."""
    from ..budget import usd
    from .render import fitted

    def cell(spent: float, limit: float | None) -> str:
        return usd(spent) if limit is None else f"{usd(spent)} of {usd(limit)}"

    def row(who: str, e: Mapping[str, Any]) -> list[str]:
        return [
            who,
            cell(e["spent_today_usd"], e["daily_usd"]),
            cell(e["spent_month_usd"], e["monthly_usd"]),
        ]

    rows = [row("whole chain", budget)]
    rows += [row(n, e) for n, e in budget["providers"].items()]
    columns = [("spend", "left", 0), ("today", "right", 0), ("this month", "right", 0)]
    title = f"Budget (UTC: {budget['day']}, {budget['month']})"
    return fitted(title, columns, rows, width, whole=(0,))
