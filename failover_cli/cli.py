"""The ``failover`` command line: parses options, wires the concrete classes, calls the core
and maps its exceptions to exit codes.

Start-up time matters (``failover ask`` runs in pipelines): only Typer is imported at module
level; Rich, httpx, YAML and the router are imported inside the commands that use them.
"""

from __future__ import annotations

import math
import os
import re
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from .config import Config
    from .protocols import StateStore
    from .router import FailoverRouter
    from .types import ProviderConfig

from .cli_base import (  # noqa: F401 - the exit codes are this module's public face too
    EXIT_BROKEN_PIPE,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_REJECTED,
    EXIT_TERMINATED,
    EXIT_USAGE,
    MAX_SECONDS,
    MAX_TOKENS,
    BadOption,
    UnknownProvider,
    _Answer,
    _close_store,
    _error_json,
    _handled,
    _load_config,
    _open_store,
    _print_json,
    _redact_url,
    _run_async,
    _state_location,
    _styled,
    _Ui,
    clean,
    guarded,
    json_text,
    run_ask,
    scrub,
)
from .cli_base import (
    _check_names as _check_provider_names,
)


def _check_names(config: Config, names: Sequence[str] | None, option: str) -> list[str] | None:
    """Validate provider names given on the command line (a usage error if unknown)."""
    try:
        return _check_provider_names(config, names, option)
    except UnknownProvider as exc:
        raise typer.BadParameter(str(exc), param_hint=exc.option) from None


EXIT_CODES_HELP = """\
[bold]Exit codes[/bold] (ask, bench, status, config, demo)
  0    answered / done
  1    no provider could answer (all failed, or still down after waiting)
  2    usage or configuration error
  3    the request itself was rejected (not retried, not failed over)
  130  interrupted (Ctrl-C; state is saved)
  141  standard output closed early (e.g. piped into `head`; state is saved)
  143  terminated (SIGTERM, as sent by timeout, systemd, Kubernetes; state is saved)
[bold]failover health[/bold] follows monitoring-plugin conventions:
  0 OK, 1 WARNING (some down, the chain can serve), 2 CRITICAL (none can),
  3 UNKNOWN (configuration error)

Start with [bold]failover demo[/bold] (no keys, no network), then [bold]failover config init[/bold].
"""

app = typer.Typer(
    name="failover",
    epilog=EXIT_CODES_HELP,
    add_completion=True,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
config_app = typer.Typer(
    help="Check, show, locate or create the configuration (providers.yaml).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    pretty_exceptions_show_locals=False,
)
app.add_typer(config_app, name="config")

# --- options shared by several commands -------------------------------------------------------

ConfigOption = Annotated[
    str | None,
    typer.Option(
        "--config",
        "-c",
        metavar="FILE",
        help="Configuration file. Default: $FAILOVER_CONFIG, ./providers.yaml, "
        "the user config dir, else the built-in chain.",
        show_default=False,
    ),
]
StateOption = Annotated[
    str | None,
    typer.Option(
        "--state",
        metavar="PATH|URL",
        envvar="FAILOVER_STATE",
        help="State file path or redis:// URL. Default: state.path/state.url from the "
        "configuration, else the user state dir.",
        show_default=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
MAX_REQUESTS = 100_000  # bench: requests per provider
MAX_CONCURRENCY = 1_000  # bench: requests in flight at once


def _finite(value: float | None) -> float | None:
    """Refuse NaN (it passes every range check) and infinity as an option's value."""
    if value is not None and not math.isfinite(value):
        raise typer.BadParameter(f"{value} is not a finite number")
    return value


# --- ask --------------------------------------------------------------------------------------

ASK_EPILOG = """\
[bold]Examples[/bold]
  failover ask "What is a circuit breaker?"
  git diff | failover ask "Review this diff"    (stdin is appended to PROMPT)
  failover ask - < prompt.txt                    (the prompt from stdin alone)
  failover ask -p gpt --no-stream --json "Hi" | jq .provider
  failover ask -v --timeout 20 --wait 0 "Quick question"
  failover ask -a screenshot.png "What is wrong in this dialog?"
  failover ask -a app.py -a README.md "Does the README match the code?"
  curl -s https://example.com/chart.png | failover ask -a - "Summarise this chart"
  failover ask --schema person.json "Invent a person" | jq .name
  failover ask --schema '{"properties": {"prime": {"type": "boolean"}}}' "Is 7 prime?"
  failover ask -p claude -m claude-opus-4-5 "A hard question"
  failover ask -m claude=claude-haiku-4-5 -m gpt=gpt-4o-mini "A quick one"

stdout carries only the answer; the trace (-v), spinner and errors go to stderr.
Piped stdin must be UTF-8 text (no NUL bytes) of at most 16 MiB: anything else is a
usage error.

[bold]Attachments[/bold] (-a, repeatable): an image is told by its content, not its name:
PNG, JPEG, GIF or WebP of at most 20 MiB, sent inline (base64). Anything else must be
UTF-8 text of at most 16 MiB, sent as its name as given, then its content in a ``` code
fence. Attachments come in order before PROMPT, in one user message. Directories, FIFOs
and devices are refused; a symbolic link is followed to a regular file. With '-a -' the
attachment is stdin, so PROMPT must be an argument (not '-'; stdin is not appended to it).

[bold]Structured output[/bold] (--schema): a value starting with '{' is the JSON schema
itself, anything else the path of a .json file holding one. The answer is read whole
(streamed from the provider), then printed as JSON: indented on a terminal, one line when
piped; with --json, the parsed object is in "parsed". An answer that is not JSON is
printed as received, and failover exits 1.

[bold]Models[/bold] (-m, repeatable): -m NAME=MODEL sets provider NAME's model for this
call. A bare -m MODEL goes to the one provider given with -p; without exactly one -p, to
every provider (among the -p ones, if any) of the kind MODEL's name starts like:
claude* anthropic; gpt*, chatgpt*, o1*, o3*, o4* openai; gemini* gemini. Anything else
needs NAME=MODEL or a single -p. Other providers keep their configured model.

Exit: 0 answered, 1 no provider could answer, 2 usage or configuration error,
3 request rejected, 130 interrupted, 143 terminated.
"""


@app.command(epilog=ASK_EPILOG)
def ask(
    prompt: Annotated[
        str | None,
        typer.Argument(
            metavar="PROMPT",
            help="The question. Piped stdin is appended to it; '-' reads stdin alone.",
            show_default=False,
        ),
    ] = None,
    system: Annotated[
        str | None, typer.Option("--system", "-s", help="System prompt.", show_default=False)
    ] = None,
    attach: Annotated[
        list[str] | None,
        typer.Option(
            "--attach",
            "-a",
            metavar="FILE",
            help="Attach an image (PNG, JPEG, GIF, WebP) or a UTF-8 text file (repeatable; "
            "'-' reads stdin). See Attachments below.",
            show_default=False,
        ),
    ] = None,
    schema: Annotated[
        str | None,
        typer.Option(
            "--schema",
            metavar="JSON|FILE",
            help="Answer with JSON matching this JSON schema (inline '{...}' or a .json "
            "file); prints the JSON answer. See Structured output below.",
            show_default=False,
        ),
    ] = None,
    max_tokens: Annotated[
        int, typer.Option("--max-tokens", min=1, max=MAX_TOKENS, help="Most tokens to generate.")
    ] = 1024,
    temperature: Annotated[
        float | None,
        typer.Option(
            "--temperature", min=0.0, max=2.0, callback=_finite, help="Sampling temperature."
        ),
    ] = None,
    provider: Annotated[
        list[str] | None,
        typer.Option(
            "--provider",
            "-p",
            metavar="NAME",
            help="Use only this provider (repeatable).",
            show_default=False,
        ),
    ] = None,
    model: Annotated[
        list[str] | None,
        typer.Option(
            "--model",
            "-m",
            metavar="[NAME=]MODEL",
            help="This call's model: NAME=MODEL for provider NAME; a bare MODEL for the one "
            "-p provider, else by its name (claude*, gpt*/o1*/o3*/o4*, gemini*). See Models "
            "below.",
            show_default=False,
        ),
    ] = None,
    timeout: Annotated[
        float | None,
        typer.Option(
            "--timeout",
            min=0.001,
            max=MAX_SECONDS,
            callback=_finite,
            metavar="SECONDS",
            help="Deadline for the whole request (default 600).",
            show_default=False,
        ),
    ] = None,
    wait: Annotated[
        float | None,
        typer.Option(
            "--wait",
            min=0.0,
            max=MAX_SECONDS,
            callback=_finite,
            metavar="SECONDS",
            help="How long to wait when every provider is down (default: queue.max_wait).",
            show_default=False,
        ),
    ] = None,
    no_stream: Annotated[
        bool, typer.Option("--no-stream", help="Wait for the whole answer, then print it.")
    ] = False,
    json_out: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Print one JSON object: text, message, finish_reason, provider, model, usage, "
            "cost_usd, latency_ms, ttft_ms, attempts, segments, switches, adjustments, and "
            "attachments (with -a) and parsed (with --schema); on failure: error and "
            "attempts.",
        ),
    ] = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Print the route trace on stderr.")
    ] = False,
    config: ConfigOption = None,
    state: StateOption = None,
) -> None:
    """Ask the chain one question; the answer streams to stdout as it arrives."""
    try:
        run_ask(
            prompt,
            system=system,
            max_tokens=max_tokens,
            temperature=temperature,
            provider=provider,
            model=model,
            attach=attach,
            schema=schema,
            timeout=timeout,
            wait=wait,
            no_stream=no_stream,
            json_out=json_out,
            verbose=verbose,
            config=config,
            state=state,
        )
    except BadOption as exc:
        raise typer.BadParameter(str(exc), param_hint=exc.option) from None


# --- health -----------------------------------------------------------------------------------

HEALTH_EPILOG = """\
[bold]Examples[/bold]
  failover health                  (exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN)
  failover health --deep --json    (a 1-token completion per provider)
  failover health --watch 10       (refresh every 10 s until Ctrl-C)
  failover health --prometheus /var/lib/node_exporter/failover.prom   (cron)
"""


@app.command(epilog=HEALTH_EPILOG)
def health(
    deep: Annotated[
        bool, typer.Option("--deep", help="Send a 1-token completion instead of a model list.")
    ] = False,
    timeout: Annotated[
        float,
        typer.Option(
            "--timeout",
            min=0.001,
            max=MAX_SECONDS,
            callback=_finite,
            metavar="SECONDS",
            help="Per-check timeout.",
        ),
    ] = 5.0,
    json_out: JsonOption = False,
    watch: Annotated[
        float | None,
        typer.Option(
            "--watch",
            min=0.1,
            max=MAX_SECONDS,
            callback=_finite,
            metavar="SECONDS",
            help="Check again every SECONDS until interrupted (with --json: one object per line).",
            show_default=False,
        ),
    ] = None,
    prometheus: Annotated[
        str | None,
        typer.Option(
            "--prometheus",
            metavar="FILE",
            help="Also write node_exporter textfile metrics to FILE (atomically).",
            show_default=False,
        ),
    ] = None,
    config: ConfigOption = None,
    state: StateOption = None,
) -> None:
    """Check every provider in parallel (no tokens spent) and update the breakers.

    A passing check moves an open breaker to half-open; a failing one opens or extends it.
    """
    with _handled(config_exit=3, failure_exit=3):
        cfg = _load_config(config)
        code = _run_async(
            _health(cfg, _state_location(state, cfg), deep, timeout, json_out, watch, prometheus)
        )
    raise typer.Exit(code)


async def _health_round(
    router: FailoverRouter, deep: bool, timeout: float
) -> tuple[list[dict[str, Any]], int, str]:
    import time

    from .breaker import BreakerState
    from .health import check_all, overall

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


def _write_atomically(path: str, text: str, mode: int = 0o644) -> None:
    """Replace ``path`` with ``text`` atomically; a symbolic link or anything but a regular
    file at ``path`` is refused (OSError), never followed (see :mod:`failover_cli.fsutil`)."""
    from .fsutil import atomic_write

    atomic_write(path, text.encode("utf-8"), mode=mode)


async def _health(
    cfg: Config,
    location: str | None,
    deep: bool,
    timeout: float,
    json_out: bool,
    watch: float | None,
    prometheus: str | None,
) -> int:
    import asyncio
    import time

    from rich.console import Group

    from .render import animated, health_summary, health_table, make_console, prometheus_text
    from .router import FailoverRouter

    out = make_console(stderr=False)
    store = _open_store(location)
    router = FailoverRouter(
        cfg, store=store, autoflush=False, on_warning=_Ui.warn, background_probes=False
    )

    async def one_round() -> tuple[list[dict[str, Any]], int, str]:
        rows, code, name = await _health_round(router, deep, timeout)
        if prometheus:
            try:
                _write_atomically(prometheus, prometheus_text(rows, code, time.time()))
            except OSError as exc:
                _Ui.say("error", f"cannot write {prometheus}: {exc.strerror or exc}")
                return rows, 3, "UNKNOWN"
        return rows, code, name

    def view(rows: list[dict[str, Any]], code: int, name: str) -> Group:
        return Group(health_table(clean(rows, finite=False)), health_summary(name, code))

    def as_json(rows: list[dict[str, Any]], code: int, name: str) -> dict[str, Any]:
        return {"status": name, "exit_code": code, "checked_at": time.time(), "providers": rows}

    try:
        if watch is None:
            rows, code, name = await one_round()
            if json_out:
                _print_json(as_json(rows, code, name))
            else:
                out.print(view(rows, code, name))
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
                _Answer().write(json_text(as_json(rows, code, name), indent=None) + "\n")
            else:
                out.print(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')}")
                out.print(view(rows, code, name))
            await asyncio.sleep(watch)
    finally:
        await router.aclose()
        _close_store(store)


# --- status -----------------------------------------------------------------------------------

STATUS_EPILOG = """\
[bold]Examples[/bold]
  failover status                   (from the saved state: no network)
  failover status --json | jq '.providers[] | {name, state, score}'
  failover status --open claude     (take claude out of rotation until --close)
  failover status --close claude    (close claude's breaker now)
  failover status --reset           (forget all state; --reset NAME for one provider)
"""


@app.command(epilog=STATUS_EPILOG)
def status(
    name: Annotated[
        str | None,
        typer.Argument(
            metavar="NAME", help="With --reset: the provider to reset.", show_default=False
        ),
    ] = None,
    json_out: JsonOption = False,
    reset: Annotated[
        bool, typer.Option("--reset", help="Forget the state of NAME (or of every provider).")
    ] = False,
    open_name: Annotated[
        str | None,
        typer.Option(
            "--open", metavar="NAME", help="Force NAME's breaker open.", show_default=False
        ),
    ] = None,
    close_name: Annotated[
        str | None,
        typer.Option(
            "--close",
            metavar="NAME",
            help="Close NAME's breaker now (clears --open).",
            show_default=False,
        ),
    ] = None,
    config: ConfigOption = None,
    state: StateOption = None,
) -> None:
    """Breakers, latency, success rate and scores from the saved state (no network)."""
    with _handled():
        if name is not None and not reset:
            raise typer.BadParameter("NAME is only used with --reset", param_hint="NAME")
        cfg = _load_config(config)
        _check_names(cfg, [n for n in (name, open_name, close_name) if n], "NAME")
        store = _open_store(_state_location(state, cfg))
        try:
            _change_state(cfg, store, reset, name, open_name, close_name)
            report = _status_report(cfg, store)
        finally:
            _close_store(store)
        if json_out:
            _print_json(report)
        else:
            from .render import make_console, status_details, status_table

            out = make_console(stderr=False)
            report = clean(report, finite=False)
            out.print(status_table(report))
            out.print(status_details(report), end="")


def _change_state(
    cfg: Config,
    store: StateStore | None,
    reset: bool,
    name: str | None,
    open_name: str | None,
    close_name: str | None,
) -> None:
    from .clock import SYSTEM_CLOCK
    from .errors import StateError
    from .tracker import Tracker

    if not (reset or open_name or close_name):
        return
    if store is None:
        raise StateError("the state store is unavailable: nothing was changed")
    if reset:
        store.reset(cfg.chain, [name] if name else None)
        _Ui.say("note", f"state of {name or 'every provider'} reset")
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
            on_warning=_Ui.warn,
        )
        tracker.force(who, mode)
        if not tracker.flush_now():
            raise StateError(f"could not save the breaker of {who}")
        verb = "forced open (until --close)" if mode == "open" else "closed"
        _Ui.say("note", f"{who}: breaker {verb}")


def _status_report(cfg: Config, store: StateStore | None) -> dict[str, Any]:
    import time

    from .errors import StateError
    from .report import status_report
    from .state import ChainState

    chain_state = ChainState()
    if store is not None:
        try:
            chain_state = store.load(cfg.chain)
        except StateError as exc:
            _Ui.warn(f"state not loaded: {exc}")
    return status_report(cfg, chain_state, time.time())


# --- bench ------------------------------------------------------------------------------------

BENCH_EPILOG = """\
[bold]Examples[/bold]
  failover bench                                  (10 requests per provider, 2 at a time)
  failover bench -n 50 -j 5 -p claude -p gpt --json
  failover bench --csv > bench.csv

Each provider is called directly (no failover); results also go into the latency history.
"""


@app.command(epilog=BENCH_EPILOG)
def bench(
    requests: Annotated[
        int,
        typer.Option("--requests", "-n", min=1, max=MAX_REQUESTS, help="Requests per provider."),
    ] = 10,
    concurrency: Annotated[
        int,
        typer.Option(
            "--concurrency", "-j", min=1, max=MAX_CONCURRENCY, help="Requests in flight at once."
        ),
    ] = 2,
    prompt: Annotated[
        str, typer.Option("--prompt", help="The prompt to send.")
    ] = "Reply with one short sentence about circuit breakers.",
    max_tokens: Annotated[
        int, typer.Option("--max-tokens", min=1, max=MAX_TOKENS, help="Most tokens per answer.")
    ] = 64,
    provider: Annotated[
        list[str] | None,
        typer.Option(
            "--provider",
            "-p",
            metavar="NAME",
            help="Benchmark only this provider (repeatable).",
            show_default=False,
        ),
    ] = None,
    json_out: JsonOption = False,
    csv_out: Annotated[bool, typer.Option("--csv", help="Print CSV.")] = False,
    config: ConfigOption = None,
    state: StateOption = None,
) -> None:
    """Measure each provider directly: latency, time to first token, throughput, cost."""
    with _handled():
        if json_out and csv_out:
            raise typer.BadParameter("choose one of --json and --csv", param_hint="--csv")
        if not prompt.strip():
            raise typer.BadParameter("the prompt is empty", param_hint="--prompt")
        cfg = _load_config(config)
        names = _check_names(cfg, provider, "--provider") or [p.name for p in cfg.providers]
        results = _run_async(
            _bench(cfg, _state_location(state, cfg), names, requests, concurrency, prompt,
                   max_tokens)
        )  # fmt: skip
        if json_out:
            _print_json({"providers": results})
        elif csv_out:
            from .benchcmd import to_csv

            _Answer().write(to_csv(clean(results, finite=False)))
        else:
            from .render import bench_table, make_console

            make_console(stderr=False).print(bench_table(clean(results, finite=False)))
    if not any(r["successes"] for r in results):
        raise typer.Exit(EXIT_FAILED)


async def _bench(
    cfg: Config,
    location: str | None,
    names: list[str],
    requests: int,
    concurrency: int,
    prompt: str,
    max_tokens: int,
) -> list[dict[str, Any]]:
    from .benchcmd import BenchProgress, run_bench
    from .clock import SYSTEM_CLOCK
    from .providers import create_provider, make_client
    from .render import animated
    from .tracker import Tracker
    from .types import CompletionRequest

    store = _open_store(location)
    tracker = Tracker(
        [p.name for p in cfg.providers],
        cfg.breaker,
        SYSTEM_CLOCK,
        store=store,
        chain=cfg.chain,
        history=cfg.state.history,
        on_warning=_Ui.warn,
    )
    client = make_client()
    configs = {p.name: p for p in cfg.providers}
    providers = [create_provider(configs[n], client) for n in names]
    progress = BenchProgress(_Ui.err(), enabled=animated(_Ui.err()))
    try:
        with progress:
            return await run_bench(
                providers,
                CompletionRequest(prompt, max_tokens),
                requests=requests,
                concurrency=concurrency,
                tracker=tracker,
                on_done=progress.advance,
                on_start=progress.add,
            )
    finally:
        await tracker.flush()
        await client.aclose()
        _close_store(store)


# --- config -----------------------------------------------------------------------------------


@config_app.command(
    "validate", epilog="[bold]Example[/bold]\n  failover config validate -c ./providers.yaml"
)
def config_validate(config: ConfigOption = None) -> None:
    """Check the configuration and list every problem as file:line: key: problem."""
    with _handled():
        from .config import find_config, load_config
        from .errors import ConfigError

        found = find_config(config)
        if found is None:
            print("no configuration file found: the built-in default chain is used "
                  "(`failover config init` writes a starter file)")  # fmt: skip
            return
        try:
            cfg = load_config(found)
        except ConfigError as exc:
            for problem in exc.problems:
                print(scrub(str(problem)))
            count = len(exc.problems)
            _Ui.say("error", f"{count} problem{'s' if count != 1 else ''} in {found}")
            raise typer.Exit(EXIT_USAGE) from None
        names = ", ".join(p.name for p in cfg.providers)
        print(f"{found}: OK ({len(cfg.providers)} providers: {names})")


@config_app.command(
    "show", epilog="[bold]Examples[/bold]\n  failover config show\n  failover config show --json"
)
def config_show(config: ConfigOption = None, json_out: JsonOption = False) -> None:
    """Print the effective chain; keys are never shown, only whether each variable is set."""
    with _handled():
        from dataclasses import asdict

        cfg = _load_config(config)
        rows = [_provider_row(p) for p in cfg.providers]
        sections = {
            "retry": asdict(cfg.retry),
            "breaker": asdict(cfg.breaker),
            "routing": asdict(cfg.routing),
            "queue": asdict(cfg.queue),
            "state": {**asdict(cfg.state), **_redacted_state(cfg)},
        }
        source = cfg.source or "built-in defaults"
        if json_out:
            _print_json({"source": source, "chain": cfg.chain, "providers": rows, **sections})
            return
        from .render import config_table, make_console, sections_text

        out = make_console(stderr=False)
        out.print(config_table(clean(rows, finite=False), source, cfg.chain))
        out.print(sections_text(clean(sections, finite=False)), end="")


# What `config show` accepts as the name of a key variable; anything else (a key pasted there
# by mistake, say `sk-...` or `gsk_...`) is shown as *** and never echoed.
ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]*")


def _provider_row(p: ProviderConfig) -> dict[str, Any]:
    """One provider as `config show` prints it: URL passwords and misplaced keys hidden."""
    from dataclasses import asdict

    from .config import base_url, key_env

    env_name = key_env(p)
    shown = env_name if env_name is None or ENV_NAME.fullmatch(env_name) else "***"
    return {
        "name": p.name,
        "kind": p.kind,
        "model": p.model,
        "base_url": _redact_url(base_url(p)),
        "api_key_env": shown,
        "api_key_set": bool(shown != "***" and env_name and os.environ.get(env_name)),
        "timeout": p.timeout,
        "connect_timeout": p.connect_timeout,
        "priority": p.priority,
        "cost": None if p.cost is None else asdict(p.cost),
    }


def _redacted_state(cfg: Config) -> dict[str, Any]:
    return {"url": _redact_url(cfg.state.url)} if cfg.state.url else {}


@config_app.command("path", epilog="[bold]Example[/bold]\n  failover config path")
def config_path(config: ConfigOption = None, state: StateOption = None) -> None:
    """Print where the configuration and the state live."""
    with _handled():
        from .config import config_dir, find_config
        from .paths import cache_dir
        from .store import default_state_path

        found = find_config(config)
        print(f"config:      {found if found else 'none found: built-in default chain'}")
        print(f"config dir:  {config_dir()}")
        location = state
        if found is not None and not location:
            location = _state_location(None, _load_config(str(found)))
        print(f"state:       {_redact_url(location) if location else default_state_path()}")
        print(f"cache:       {cache_dir()} (parsed configurations; safe to delete)")


@config_app.command(
    "init",
    epilog="[bold]Examples[/bold]\n  failover config init\n  failover config init --force",
)
def config_init(
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
    path: Annotated[
        str | None,
        typer.Option(
            "--path",
            metavar="FILE",
            help="Where to write (default: providers.yaml in the user config dir).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Write a commented starter providers.yaml (never overwrites without --force)."""
    from pathlib import Path

    from .config import config_dir
    from .starter import STARTER_YAML

    target = Path(path) if path else config_dir() / "providers.yaml"
    if (target.exists() or target.is_symlink()) and not force:
        _Ui.say("error", f"{target} already exists (use --force to overwrite it)")
        raise typer.Exit(EXIT_USAGE)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        _write_atomically(str(target), STARTER_YAML, mode=0o600)
    except OSError as exc:
        _Ui.say("error", f"cannot write {target}: {exc.strerror or exc}")
        raise typer.Exit(EXIT_FAILED) from None
    print(target)
    _Ui.say("note", "edit it, then check it with `failover config validate`")


# --- demo and simulators ----------------------------------------------------------------------


@app.command(epilog="[bold]Examples[/bold]\n  failover demo\n  failover demo --fast")
def demo(
    fast: Annotated[bool, typer.Option("--fast", help="Shorter pauses and cooldowns.")] = False,
) -> None:
    """Watch a failover happen: local simulators, no keys, no network (about 10 seconds).

    The primary (Anthropic API) fails, the chain fails over to the secondary (OpenAI API),
    the primary's breaker opens and is skipped, then recovers through half-open.
    """
    with _handled():
        from .demo import run_demo

        raise typer.Exit(_run_async(run_demo(fast=fast)))


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    add_help_option=False,
    epilog="[bold]Examples[/bold]\n  failover sim --kind anthropic --statuses 529,529,200\n"
    "  failover sim --kind openai --port 8002 --fault truncate\n  failover sim --help",
)
def sim(ctx: typer.Context) -> None:
    """Serve a local simulator of one provider API, failing on demand (rehearse outages).

    Point a provider's base_url at the printed URL. All options: failover sim --help.
    """
    with _handled():
        from .sim.__main__ import main as sim_main

        raise typer.Exit(sim_main(list(ctx.args)))


# --- entry point ------------------------------------------------------------------------------


def _version(value: bool) -> None:
    if value:
        from . import __version__

        print(f"failover {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Send a prompt through a priority-ordered chain of AI providers, with circuit breakers,
    retries and persistent state: if any path is up, you get an answer."""


def run(argv: Sequence[str] | None = None) -> None:
    """Run the command line (``failover`` and ``python -m failover_cli``); exits the process."""
    guarded(lambda: _invoke(list(argv) if argv is not None else None))


def _invoke(args: list[str] | None) -> None:
    """Run the Typer app; a usage error is one line on stderr and exit 2."""
    from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError
    from typer._click.utils import PacifyFlushWrapper

    try:
        code = app(args=args, prog_name="failover", standalone_mode=False)
    except SystemExit:
        if isinstance(sys.stdout, PacifyFlushWrapper):  # Typer met a closed stdout: exit 1
            raise SystemExit(EXIT_BROKEN_PIPE) from None
        raise
    except NoArgsIsHelpError as exc:
        raise SystemExit(exc.exit_code) from None  # the help is already printed
    except ClickException as exc:
        _Ui.say("error", _usage_line(exc, exc.ctx if isinstance(exc, UsageError) else None))
        raise SystemExit(exc.exit_code) from None
    except typer.Abort:
        raise SystemExit(EXIT_FAILED) from None
    raise SystemExit(code if isinstance(code, int) else EXIT_OK)


def _usage_line(exc: Any, ctx: Any) -> str:
    """``exc``'s message, on one line, and where help is."""
    message = " ".join(exc.format_message().split())
    if ctx is None:
        return message
    command = ctx.command_path.partition(" ")[2]
    prefix = f"{command}: " if command else ""
    return f"{prefix}{message} (see '{ctx.command_path} --help')"
