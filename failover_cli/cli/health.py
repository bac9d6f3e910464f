"""``failover health``: check every provider in parallel and feed the breakers; exit codes follow
the monitoring-plugin conventions (0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .exits import HEALTH_UNKNOWN, handled, run_async
from .output import Answer, clean, json_text, print_json, say, warn
from .wiring import close_store, load_config, open_store, state_location, write_atomically

if TYPE_CHECKING:
    from ..config import Config
    from ..router import FailoverRouter


def run_health(
    *,
    deep: bool,
    timeout: float,
    json_out: bool,
    watch: float | None,
    prometheus: str | None,
    config: str | None,
    state: str | None,
    boxed: bool = False,
) -> None:
    """Check every provider (see ``failover health --help``); exits with the overall status."""
    with handled(config_exit=HEALTH_UNKNOWN, failure_exit=HEALTH_UNKNOWN):
        cfg = load_config(config)
        checking = _health(
            cfg, state_location(state, cfg), deep, timeout, json_out, watch, prometheus, boxed
        )
        try:
            code = run_async(checking)
        except KeyboardInterrupt:
            if watch is None:
                raise
            code = 0  # Ctrl-C is how a watch ends (state is saved by then)
    raise SystemExit(code)


async def _health_round(
    router: FailoverRouter, deep: bool, timeout: float
) -> tuple[list[dict[str, Any]], int, str]:
    import time

    from ..breaker import BreakerState
    from ..health import check_all, overall

    results = await check_all(
        list(router.providers.values()), deep=deep, timeout=timeout, tracker=router.tracker
    )
    await router.flush()
    now = time.time()
    states = {r.provider: router.tracker.breakers[r.provider].state(now) for r in results}
    status = overall(results, [states[r.provider] is not BreakerState.OPEN for r in results])
    configs = {p.name: p for p in router.config.providers}
    rows = [
        {
            "name": r.provider,
            "kind": configs[r.provider].kind,
            "model": configs[r.provider].model,
            "ok": r.ok,
            "latency_ms": round(r.latency_ms, 3),
            "status": r.status,
            "error": r.error,
            "error_class": r.error_class.value if r.error_class else None,
            "breaker": states[r.provider].value,
        }
        for r in results
    ]
    return rows, int(status), status.name


async def _health(
    cfg: Config,
    location: str | None,
    deep: bool,
    timeout: float,
    json_out: bool,
    watch: float | None,
    prometheus: str | None,
    boxed: bool = False,
) -> int:
    import asyncio
    import time

    from rich.console import Group

    from ..router import FailoverRouter
    from .render import animated, health_summary, health_table, make_console, print_table

    out = make_console(stderr=False)
    store = open_store(location)
    router = FailoverRouter(
        cfg, store=store, autoflush=False, on_warning=warn, background_probes=False
    )

    async def one_round() -> tuple[list[dict[str, Any]], int, str]:
        rows, code, name = await _health_round(router, deep, timeout)
        if prometheus:
            try:
                write_atomically(prometheus, prometheus_text(rows, code, time.time()))
            except OSError as exc:
                say("error", f"cannot write {prometheus}: {exc.strerror or exc}")
                return rows, HEALTH_UNKNOWN, "UNKNOWN"
        return rows, code, name

    def view(rows: list[dict[str, Any]], code: int, name: str) -> Group:
        return Group(health_table(clean(rows, finite=False)), health_summary(name, code))

    def as_json(rows: list[dict[str, Any]], code: int, name: str) -> dict[str, Any]:
        return {"status": name, "exit_code": code, "checked_at": time.time(), "providers": rows}

    try:
        if watch is None:
            rows, code, name = await one_round()
            if json_out:
                print_json(as_json(rows, code, name))
            else:
                print_table(out, view(rows, code, name), boxed=boxed)
            return code
        if animated(out) and not json_out:
            from rich.live import Live

            with Live(console=out, auto_refresh=False) as live:
                while True:
                    rows, code, name = await one_round()
                    stamp = time.strftime("%H:%M:%S")
                    footer = f"checked {stamp}; every {watch:g} s; Ctrl-C to stop"
                    live.update(Group(view(rows, code, name), footer), refresh=True)
                    await asyncio.sleep(watch)
        while True:
            rows, code, name = await one_round()
            if json_out:
                Answer().write(json_text(as_json(rows, code, name), indent=None) + "\n")
            else:
                out.print(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')}")
                print_table(out, view(rows, code, name), boxed=boxed)
            await asyncio.sleep(watch)
    finally:
        await router.aclose()
        close_store(store)


# --- Prometheus node_exporter textfile --------------------------------------------------------

BREAKER_VALUE = {"closed": 0, "half_open": 1, "open": 2}


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def prometheus_text(rows: Sequence[Mapping[str, Any]], exit_code: int, now: float) -> str:
    """Health results in the Prometheus text exposition format (node_exporter textfile)."""
    lines: list[str] = []

    def family(name: str, help_text: str, values: Sequence[tuple[str, float]]) -> None:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} gauge")
        lines.extend(f"{name}{labels} {_number(value)}" for labels, value in values)

    def labels(r: Mapping[str, Any]) -> str:
        return (
            f'{{provider="{_label(r["name"])}",kind="{_label(r["kind"])}",'
            f'model="{_label(r["model"])}"}}'
        )

    family(
        "failover_provider_up",
        "1 if the provider's last health check passed, else 0.",
        [(labels(r), 1 if r["ok"] else 0) for r in rows],
    )
    family(
        "failover_provider_latency_seconds",
        "Duration of the provider's last health check in seconds.",
        [(labels(r), round(r["latency_ms"] / 1000, 6)) for r in rows],
    )
    family(
        "failover_breaker_state",
        "Circuit breaker state: 0 closed, 1 half-open, 2 open.",
        [(labels(r), BREAKER_VALUE.get(r["breaker"], 2)) for r in rows],
    )
    family(
        "failover_health_status",
        "Overall status: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.",
        [("", exit_code)],
    )
    family(
        "failover_health_last_run_timestamp_seconds",
        "When the health check ran (Unix time).",
        [("", round(now, 3))],
    )
    return "\n".join(lines) + "\n"
