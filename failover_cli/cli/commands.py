"""The ``failover`` command line as Typer sees it: the app, each command's help, and its
parameters, built from the declarations in :mod:`failover_cli.cli.options`.

Each command is a few lines that hand its parameters to the module that does the work,
imported when the command runs; a BadOption it raises becomes Typer's usage error (exit 2).
Start-up time matters: only Typer is imported at module level.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any

import typer

from . import options as o
from .exits import EXIT_OK, BadOption, click_errors, guarded

EXIT_CODES_HELP = """\
[bold]Exit codes[/bold] (ask, chat, logs, bench, status, config, demo)
  0    answered / done
  1    no provider could answer (all failed, or still down after waiting)
  2    usage or configuration error
  3    the request itself was rejected (not retried, not failed over)
  4    refused by the budget (answering would exceed a spend limit)
  130  interrupted (Ctrl-C; state is saved)
  141  standard output closed early (e.g. piped into `head`; state is saved)
  143  terminated (SIGTERM, as sent by timeout, systemd, Kubernetes; state is saved)
[bold]failover health[/bold] follows monitoring-plugin conventions:
  0 OK, 1 WARNING (some down, the chain can serve), 2 CRITICAL (none can),
  3 UNKNOWN (configuration error)

Start with [bold]failover demo[/bold] (no keys, no network), then [bold]failover config init[/bold].
"""

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
  failover ask -c "And what about half-open?"     (continue the last conversation)
  failover ask --no-log "Not for the history"

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

HEALTH_EPILOG = """\
[bold]Examples[/bold]
  failover health                  (exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN)
  failover health --deep --json    (a 1-token completion per provider)
  failover health --watch 10       (refresh every 10 s until Ctrl-C, then exit 0)
  failover health --prometheus /var/lib/node_exporter/failover.prom   (cron)
"""

STATUS_EPILOG = """\
[bold]Examples[/bold]
  failover status                   (from the saved state: no network)
  failover status --json | jq '.providers[] | {name, state, score}'
  failover status --open claude     (take claude out of rotation until --close)
  failover status --close claude    (close claude's breaker now)
  failover status --reset           (forget all state; --reset NAME for one provider)
"""

BENCH_EPILOG = """\
[bold]Examples[/bold]
  failover bench                                  (10 requests per provider, 2 at a time)
  failover bench -n 50 -j 5 -p claude -p gpt --json
  failover bench --csv > bench.csv

Each provider is called directly (no failover); results also go into the latency history.
"""

CHAT_EPILOG = """\
[bold]Examples[/bold]
  failover chat                      (a new conversation)
  failover chat -c                   (go on with the last one, from ask or chat)
  failover chat --cid 6752ab12cd3f0e91 -s "Answer briefly"

Type a prompt and Enter; /exit or Ctrl-D ends the chat (exit 0).
Ctrl-C during an answer stops that answer and returns to the prompt;
Ctrl-C at the prompt ends the chat (exit 130). Each answered turn is
recorded in the history (not with --no-log or FAILOVER_LOG=0).
"""

LOGS_EPILOG = """\
[bold]Examples[/bold]
  failover logs                      (the newest 20 requests)
  failover logs -n 5 -q "circuit breaker" -p claude --since 7d
  failover logs --json | jq '.[0].answer'
  failover logs show 42

Every ask and chat turn is recorded in history.db in the user data
directory (or log.path): prompt, system prompt, answer (or why none came),
providers, attempts, tokens, cost; attachments by name and SHA-256 only;
never a key.
The oldest entries are pruned beyond log.max_entries or log.max_mb.
Not recorded: --no-log, FAILOVER_LOG=0, log: false in the configuration.
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
logs_app = typer.Typer(
    help="List and search the recorded requests (the history), or show one.",
    invoke_without_command=True,
    pretty_exceptions_enable=False,
    pretty_exceptions_show_locals=False,
)

# --- parameters from the declarations ---------------------------------------------------------

_TYPES: dict[str, Any] = {"flag": bool, "str": str, "list": list[str], "int": int, "float": float}


def _finite(value: float | None) -> float | None:
    """Refuse NaN (it passes every range check) and infinity as an option's value."""
    if value is not None and not math.isfinite(value):
        raise typer.BadParameter(f"{value} is not a finite number")
    return value


def _annotation(p: o.Param, extra: Mapping[str, Any]) -> Any:
    """``p`` as Typer reads a parameter: ``Annotated[type, typer.Option(...)]``."""
    if isinstance(p, o.Arg):
        info: Any = typer.Argument(metavar=p.metavar, help=p.help, show_default=False)
        return Annotated[str | None, info]
    settings: dict[str, Any] = {"help": p.help}
    if p.metavar is not None:
        settings["metavar"] = p.metavar
    if p.lo is not None:
        settings["min"] = p.lo
    if p.hi is not None:
        settings["max"] = p.hi
    if p.envvar is not None:
        settings["envvar"] = p.envvar
    if p.kind == "float":
        settings["callback"] = _finite
    if p.default is None:
        settings["show_default"] = False
    settings.update(extra)
    python_type = _TYPES[p.kind]
    if p.default is None and p.kind != "flag":
        python_type = python_type | None
    return Annotated[python_type, typer.Option(*p.flags, **settings)]


def _bound(
    work: Callable[..., Any],
    spec: Sequence[o.Param],
    extra: Mapping[str, Mapping[str, Any]] | None = None,
) -> Callable[..., Any]:
    """``work`` as a Typer command function: the parameters of ``spec`` (with ``extra``
    Typer settings by parameter name) in its signature, and a BadOption it raises turned
    into Typer's usage error, naming the option."""

    def command(**kwargs: Any) -> Any:
        try:
            return work(**kwargs)
        except BadOption as exc:
            raise typer.BadParameter(str(exc), param_hint=exc.option) from None

    for attr in ("__name__", "__qualname__", "__doc__", "__module__"):
        setattr(command, attr, getattr(work, attr))
    kind = inspect.Parameter.KEYWORD_ONLY
    signature = inspect.Signature(
        [
            inspect.Parameter(
                p.param,
                kind,
                default=p.default if isinstance(p, o.Opt) else None,
                annotation=_annotation(p, (extra or {}).get(p.param, {})),
            )
            for p in spec
        ]
    )
    setattr(command, "__signature__", signature)  # noqa: B010 - what inspect.signature reads
    return command


def _command(
    group: typer.Typer, spec: Sequence[o.Param], name: str | None = None, **settings: Any
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register the decorated function as a command of ``group`` taking ``spec``."""

    def register(work: Callable[..., Any]) -> Callable[..., Any]:
        group.command(name, **settings)(_bound(work, spec))
        return work

    return register


# --- the commands -----------------------------------------------------------------------------


@_command(app, o.ASK, epilog=ASK_EPILOG)
def ask(**kwargs: Any) -> None:
    """Ask the chain one question; the answer streams to stdout as it arrives."""
    from .ask import run_ask

    run_ask(**kwargs)


@_command(app, o.HEALTH, epilog=HEALTH_EPILOG)
def health(**kwargs: Any) -> None:
    """Check every provider in parallel (no tokens spent) and update the breakers.

    A passing check moves an open breaker to half-open; a failing one opens or extends it.
    """
    from .health import run_health

    run_health(**kwargs)


@_command(app, o.STATUS, epilog=STATUS_EPILOG)
def status(**kwargs: Any) -> None:
    """Breakers, latency, success rate and scores from the saved state (no network)."""
    from .status import run_status

    run_status(**kwargs)


@_command(app, o.BENCH, epilog=BENCH_EPILOG)
def bench(**kwargs: Any) -> None:
    """Measure each provider directly: latency, time to first token, throughput, cost."""
    from .bench import run_bench_command

    run_bench_command(**kwargs)


@_command(
    config_app,
    o.CONFIG_VALIDATE,
    "validate",
    epilog="[bold]Example[/bold]\n  failover config validate --config ./providers.yaml",
)
def config_validate(**kwargs: Any) -> None:
    """Check the configuration and list every problem as file:line: key: problem."""
    from .config_cmd import run_validate

    run_validate(**kwargs)


@_command(
    config_app,
    o.CONFIG_SHOW,
    "show",
    epilog="[bold]Examples[/bold]\n  failover config show\n  failover config show --json",
)
def config_show(**kwargs: Any) -> None:
    """Print the effective chain; keys are never shown, only whether each variable is set."""
    from .config_cmd import run_show

    run_show(**kwargs)


@_command(config_app, o.CONFIG_PATH, "path", epilog="[bold]Example[/bold]\n  failover config path")
def config_path(**kwargs: Any) -> None:
    """Print where the configuration and the state live."""
    from .config_cmd import run_path

    run_path(**kwargs)


@_command(
    config_app,
    o.CONFIG_INIT,
    "init",
    epilog="[bold]Examples[/bold]\n  failover config init\n  failover config init --force",
)
def config_init(**kwargs: Any) -> None:
    """Write a commented starter providers.yaml (never overwrites without --force)."""
    from .config_cmd import run_init

    run_init(**kwargs)


SERVE_EPILOG = """\
[bold]Examples[/bold]
  failover serve                                  (127.0.0.1:8400)
  OPENAI_BASE_URL=http://127.0.0.1:8400/v1 your-openai-app
  ANTHROPIC_BASE_URL=http://127.0.0.1:8400 your-anthropic-app
  FAILOVER_GATEWAY_KEYS=k1 failover serve --host 0.0.0.0 --workers 2   (with serve.keys_env)

Needs the extra: pip install 'failover\\[serve]'. SIGTERM finishes in-flight requests
within --grace seconds, saves the state and exits 0.
"""


@_command(app, o.SERVE, epilog=SERVE_EPILOG)
def serve(**kwargs: Any) -> None:
    """Serve the chain as an OpenAI- and Anthropic-compatible API for any app."""
    from .serve import run_serve

    run_serve(**kwargs)


@_command(app, o.CHAT, epilog=CHAT_EPILOG)
def chat(**kwargs: Any) -> None:
    """Chat at a prompt: each answer streams through the chain, with the earlier turns."""
    from .chat_loop import run_chat

    run_chat(**kwargs)


def _logs(**kwargs: Any) -> None:
    """List the newest recorded requests, newest first (see also: failover logs show ID)."""
    from typer._click.globals import get_current_context

    if get_current_context().invoked_subcommand is not None:
        return  # `logs show`: its options are its own
    from .logs import run_logs

    run_logs(**kwargs)


logs_app.callback(epilog=LOGS_EPILOG)(_bound(_logs, o.LOGS))
app.add_typer(logs_app, name="logs")


@_command(
    logs_app,
    o.LOGS_SHOW,
    "show",
    epilog="[bold]Examples[/bold]\n  failover logs show 42\n  failover logs show 42 --json",
)
def logs_show(**kwargs: Any) -> None:
    """Show one recorded request whole: prompt, answer, providers, attempts, tokens, cost."""
    from .logs import run_logs_show

    run_logs_show(**kwargs)


@_command(app, o.DEMO, epilog="[bold]Examples[/bold]\n  failover demo\n  failover demo --fast")
def demo(**kwargs: Any) -> None:
    """Watch a failover happen: local simulators, no keys, no network (about 10 seconds).

    The primary (Anthropic API) fails, the chain fails over to the secondary (OpenAI API),
    the primary's breaker opens and is skipped, then recovers through half-open.
    """
    from .demo import run_demo_command

    run_demo_command(**kwargs)


SIM_EPILOG = """\
[bold]Examples[/bold]
  failover sim --kind anthropic --statuses 529,529,200 --retry-after 2
  failover sim --kind openai --port 8002 --fault truncate
  failover sim --kind openai --statuses 429 --remaining-requests 0 --requests-reset 5

Prints its base URL on stdout; point a provider's base_url at it. Ctrl-C or SIGTERM
stops it (exit 0). Also runs as python -m failover_cli.sim.
"""


@_command(app, o.SIM, epilog=SIM_EPILOG)
def sim(**kwargs: Any) -> None:
    """Serve a local simulator of one provider API, failing on demand (rehearse outages)."""
    from ..sim.__main__ import SimOptionError, run
    from .exits import handled

    with handled():
        try:
            code = run(**kwargs)
        except SimOptionError as exc:
            raise BadOption(str(exc), exc.option) from None
        raise SystemExit(code)


# --- the top level ----------------------------------------------------------------------------


def _version(value: bool) -> None:
    if value:
        from .. import __version__

        print(f"failover {__version__}")
        raise typer.Exit()


def _main(**kwargs: Any) -> None:
    """Send a prompt through a priority-ordered chain of AI providers, with circuit breakers,
    retries and persistent state: if any path is up, you get an answer."""


app.callback()(_bound(_main, o.TOP, {"version": {"callback": _version, "is_eager": True}}))


def run(argv: Sequence[str] | None = None) -> None:
    """Run the command line (``failover`` and ``python -m failover_cli``); exits the process."""
    guarded(lambda: _invoke(list(argv) if argv is not None else None))


def _invoke(args: list[str] | None) -> None:
    """Run the Typer app; a usage error is one line on stderr and exit 2."""
    with click_errors():
        code = app(args=args, prog_name="failover", standalone_mode=False)
    raise SystemExit(code if isinstance(code, int) else EXIT_OK)
