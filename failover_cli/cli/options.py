"""Every option of the command line, declared once: its names, type, bounds, default, help and
environment variable.

Both readers of the command line read this table: :mod:`failover_cli.cli.commands` builds the
Typer parameters of each command from it, and :mod:`failover_cli.cli.fast` reads a plain
``failover ask`` from :data:`ASK` without importing Typer. It imports nothing (it is on the
start-up path of every ``ask``).

Short flags are decided here for the whole command line: one short flag means one long option
in every command (a test walks every command to hold it so). ``-c`` is ``--continue``, as in
``llm`` and ``mods``; ``--config`` has none. ``-n`` is ``--requests`` everywhere: requests per
provider in ``bench``, the newest N recorded requests in ``logs`` (``llm logs -n`` works).
"""

from __future__ import annotations

from collections.abc import Sequence

# Bounds of the numeric options.
MAX_TOKENS = 1_000_000  # more than any model generates in one answer
MAX_SECONDS = 86_400.0  # a day: the longest --timeout, --wait or --watch that makes sense
MAX_REQUESTS = 100_000  # bench: requests per provider
MAX_CONCURRENCY = 1_000  # bench: requests in flight at once
MAX_LISTED = 100_000  # logs: entries listed at once

KINDS = ("flag", "str", "list", "int", "float")


class Opt:
    """One option: ``name`` (``--max-tokens``), ``param`` (the keyword its command receives),
    ``kind`` (one of :data:`KINDS`: an on/off flag, a string, a repeatable string, a number),
    an optional ``short`` flag, the inclusive bounds ``lo``/``hi`` of a number, its ``default``,
    ``help``, ``metavar`` and ``envvar`` (read when the option is not given)."""

    __slots__ = (
        "default", "envvar", "help", "hi", "kind", "lo", "metavar", "name", "param", "short",
    )  # fmt: skip

    def __init__(
        self,
        name: str,
        param: str,
        kind: str,
        help: str,
        *,
        short: str | None = None,
        default: object = None,
        lo: float | None = None,
        hi: float | None = None,
        metavar: str | None = None,
        envvar: str | None = None,
    ) -> None:
        self.name = name
        self.param = param
        self.kind = kind
        self.help = help
        self.short = short
        self.default = False if kind == "flag" else default
        self.lo = lo
        self.hi = hi
        self.metavar = metavar
        self.envvar = envvar

    @property
    def flags(self) -> tuple[str, ...]:
        return (self.name, self.short) if self.short else (self.name,)

    def __repr__(self) -> str:
        return f"Opt({'/'.join(self.flags)} -> {self.param})"


class Arg:
    """A positional argument: ``param``, shown as ``metavar``; optional (default None)."""

    __slots__ = ("help", "metavar", "param")

    def __init__(self, param: str, metavar: str, help: str) -> None:
        self.param = param
        self.metavar = metavar
        self.help = help

    def __repr__(self) -> str:
        return f"Arg({self.metavar} -> {self.param})"


Param = Opt | Arg

# --- shared by several commands -----------------------------------------------------------

CONFIG = Opt(
    "--config",
    "config",
    "str",
    "Configuration file. Default: $FAILOVER_CONFIG, ./providers.yaml, the user config dir, "
    "else the built-in chain.",
    metavar="FILE",
)
STATE = Opt(
    "--state",
    "state",
    "str",
    "State file path or redis:// URL. Default: state.path/state.url from the configuration, "
    "else the user state dir.",
    metavar="PATH|URL",
    envvar="FAILOVER_STATE",
)
JSON = Opt("--json", "json_out", "flag", "Print JSON instead of a table.")
TABLE = Opt(
    "--table",
    "boxed",
    "flag",
    "Draw the table with borders even when the output is not a terminal.",
)


def _provider(help: str) -> Opt:
    return Opt("--provider", "provider", "list", help, short="-p", metavar="NAME")


# --- ask ----------------------------------------------------------------------------------

ASK: tuple[Param, ...] = (
    Arg("prompt", "PROMPT", "The question. Piped stdin is appended to it; '-' reads stdin alone."),
    Opt("--system", "system", "str", "System prompt.", short="-s"),
    Opt(
        "--attach",
        "attach",
        "list",
        "Attach an image (PNG, JPEG, GIF, WebP) or a UTF-8 text file (repeatable; '-' reads "
        "stdin). See Attachments below.",
        short="-a",
        metavar="FILE",
    ),
    Opt(
        "--schema",
        "schema",
        "str",
        "Answer with JSON matching this JSON schema (inline '{...}' or a .json file); prints "
        "the JSON answer. See Structured output below.",
        metavar="JSON|FILE",
    ),
    Opt(
        "--max-tokens",
        "max_tokens",
        "int",
        "Most tokens to generate.",
        default=1024,
        lo=1,
        hi=MAX_TOKENS,
    ),
    Opt("--temperature", "temperature", "float", "Sampling temperature.", lo=0.0, hi=2.0),
    _provider("Use only this provider (repeatable)."),
    Opt(
        "--model",
        "model",
        "list",
        "This call's model: NAME=MODEL for provider NAME; a bare MODEL for the one -p "
        "provider, else by its name (claude*, gpt*/o1*/o3*/o4*, gemini*). See Models below.",
        short="-m",
        metavar="[NAME=]MODEL",
    ),
    Opt(
        "--timeout",
        "timeout",
        "float",
        "Deadline for the whole request (default 600).",
        lo=0.001,
        hi=MAX_SECONDS,
        metavar="SECONDS",
    ),
    Opt(
        "--wait",
        "wait",
        "float",
        "How long to wait when every provider is down (default: queue.max_wait).",
        lo=0.0,
        hi=MAX_SECONDS,
        metavar="SECONDS",
    ),
    Opt("--no-stream", "no_stream", "flag", "Wait for the whole answer, then print it."),
    Opt(
        "--json",
        "json_out",
        "flag",
        "Print one JSON object: text, message, finish_reason, provider, model, usage, "
        "cost_usd, latency_ms, ttft_ms, attempts, segments, switches, adjustments, and "
        "attachments (with -a) and parsed (with --schema); on failure: error and attempts.",
    ),
    Opt("--verbose", "verbose", "flag", "Print the route trace on stderr.", short="-v"),
    Opt(
        "--usage",
        "usage",
        "flag",
        "End with one line on stderr: provider, model, tokens and cost (also with -v).",
    ),
    Opt(
        "--continue",
        "continue_last",
        "flag",
        "Continue the last conversation: its earlier turns are sent before PROMPT.",
        short="-c",
    ),
    Opt("--cid", "cid", "str", "Continue the conversation with this ID.", metavar="ID"),
    Opt(
        "--no-log",
        "no_log",
        "flag",
        "Do not record this call in the history (also: FAILOVER_LOG=0, or log: false).",
    ),
    CONFIG,
    STATE,
)

# --- chat, logs ---------------------------------------------------------------------------

_CHAT_PARAMS = (
    "system", "max_tokens", "temperature", "provider", "model", "timeout", "wait", "verbose",
    "usage", "continue_last", "cid", "no_log", "config", "state",
)  # fmt: skip
CHAT: tuple[Param, ...] = tuple(p for p in ASK if isinstance(p, Opt) and p.param in _CHAT_PARAMS)

LOGS: tuple[Param, ...] = (
    Opt(
        "--requests",
        "requests",
        "int",
        "Show the newest N recorded requests.",
        short="-n",
        default=20,
        lo=1,
        hi=MAX_LISTED,
    ),
    Opt(
        "--query",
        "query",
        "str",
        "Only entries whose prompt, system prompt or answer hold every word of TEXT.",
        short="-q",
        metavar="TEXT",
    ),
    _provider("Only entries this provider answered or helped answer (repeatable)."),
    Opt(
        "--since",
        "since",
        "str",
        "Only entries since WHEN: an age (30m, 12h, 7d) or a date (2026-01-31, 2026-01-31T08:00).",
        metavar="WHEN",
    ),
    Opt("--cid", "cid", "str", "Only the conversation with this ID.", metavar="ID"),
    Opt("--json", "json_out", "flag", "Print one JSON list of the entries (all fields)."),
    TABLE,
    CONFIG,
)
LOGS_SHOW: tuple[Param, ...] = (
    Arg("entry", "ID", "The entry to show (its number in `failover logs`)."),
    Opt("--json", "json_out", "flag", "Print the entry as one JSON object."),
    CONFIG,
)

# --- health, status, bench ----------------------------------------------------------------

HEALTH: tuple[Param, ...] = (
    Opt("--deep", "deep", "flag", "Send a 1-token completion instead of a model list."),
    Opt(
        "--timeout",
        "timeout",
        "float",
        "Per-check timeout.",
        default=5.0,
        lo=0.001,
        hi=MAX_SECONDS,
        metavar="SECONDS",
    ),
    JSON,
    Opt(
        "--watch",
        "watch",
        "float",
        "Check again every SECONDS until interrupted (with --json: one object per line).",
        lo=0.1,
        hi=MAX_SECONDS,
        metavar="SECONDS",
    ),
    Opt(
        "--prometheus",
        "prometheus",
        "str",
        "Also write node_exporter textfile metrics to FILE (atomically).",
        metavar="FILE",
    ),
    TABLE,
    CONFIG,
    STATE,
)

STATUS: tuple[Param, ...] = (
    Arg("name", "NAME", "With --reset: the provider to reset."),
    JSON,
    Opt("--reset", "reset", "flag", "Forget the state of NAME (or of every provider)."),
    Opt("--open", "open_name", "str", "Force NAME's breaker open.", metavar="NAME"),
    Opt(
        "--close", "close_name", "str", "Close NAME's breaker now (clears --open).", metavar="NAME"
    ),
    TABLE,
    CONFIG,
    STATE,
)

BENCH: tuple[Param, ...] = (
    Opt(
        "--requests",
        "requests",
        "int",
        "Requests per provider.",
        short="-n",
        default=10,
        lo=1,
        hi=MAX_REQUESTS,
    ),
    Opt(
        "--concurrency",
        "concurrency",
        "int",
        "Requests in flight at once.",
        short="-j",
        default=2,
        lo=1,
        hi=MAX_CONCURRENCY,
    ),
    Opt(
        "--prompt",
        "prompt",
        "str",
        "The prompt to send.",
        default="Reply with one short sentence about circuit breakers.",
    ),
    Opt(
        "--max-tokens",
        "max_tokens",
        "int",
        "Most tokens per answer.",
        default=64,
        lo=1,
        hi=MAX_TOKENS,
    ),
    _provider("Benchmark only this provider (repeatable)."),
    JSON,
    Opt("--csv", "csv_out", "flag", "Print CSV."),
    CONFIG,
    STATE,
)

# --- serve --------------------------------------------------------------------------------

SERVE: tuple[Param, ...] = (
    Opt(
        "--host",
        "host",
        "str",
        "Address to bind (default: serve.host, 127.0.0.1). Any other than loopback needs "
        "gateway keys (serve.keys_env or serve.keys_file).",
        metavar="ADDR",
    ),
    Opt(
        "--port",
        "port",
        "int",
        "Port (default: serve.port, 8400); 0 picks a free one.",
        lo=0,
        hi=65535,
    ),
    Opt(
        "--workers",
        "workers",
        "int",
        "Worker processes; they share breaker state through the store (Redis for a fleet).",
        default=1,
        lo=1,
        hi=256,
    ),
    Opt(
        "--grace",
        "grace",
        "float",
        "Seconds in-flight requests and streams get to finish after SIGTERM.",
        default=30.0,
        lo=0,
        hi=MAX_SECONDS,
    ),
    Opt(
        "--access-log",
        "access_log",
        "str",
        "Where the JSON-lines access log goes: '-' stdout (default), a file, or 'off'.",
        metavar="PATH",
    ),
    Opt(
        "--log-bodies",
        "log_bodies",
        "flag",
        "Also log request bodies and answers (prompts!) in the access log.",
    ),
    CONFIG,
    STATE,
)

# --- config, demo, the top level ----------------------------------------------------------

CONFIG_VALIDATE: tuple[Param, ...] = (CONFIG,)
CONFIG_SHOW: tuple[Param, ...] = (CONFIG, JSON, TABLE)
CONFIG_PATH: tuple[Param, ...] = (CONFIG, STATE)
CONFIG_INIT: tuple[Param, ...] = (
    Opt("--force", "force", "flag", "Overwrite an existing file."),
    Opt(
        "--path",
        "path",
        "str",
        "Where to write (default: providers.yaml in the user config dir).",
        metavar="FILE",
    ),
)
DEMO: tuple[Param, ...] = (Opt("--fast", "fast", "flag", "Shorter pauses and cooldowns."),)

# --- sim ------------------------------------------------------------------------------------

# What a simulator can speak and how it can fail: equal to failover_cli.types.KINDS and
# failover_cli.sim.behavior.FAULTS (a test holds them so; this module imports nothing).
SIM_KINDS = ("anthropic", "openai", "ollama", "gemini")
SIM_FAULTS = (
    "hang", "drip", "truncate", "reset", "malformed", "midstream_error", "context_length",
    "quota", "auth", "not_found", "empty", "stall", "no_end_marker", "deep_json",
    "huge_number", "bad_delta", "gzip_bomb", "endless", "reject_prefill", "content_filter",
)  # fmt: skip
SIM: tuple[Param, ...] = (
    Opt(
        "--kind", "kind", "str", f"Which API to speak (required): {', '.join(SIM_KINDS)}.",
        metavar="KIND",
    ),
    Opt("--host", "host", "str", "Address to listen on.", default="127.0.0.1"),
    Opt("--port", "port", "int", "Port to listen on (0: any free port).", default=0, lo=0,
        hi=65535),
    Opt("--api-key", "api_key", "str", "The only key accepted (default: any non-empty key).",
        metavar="KEY"),
    Opt("--text", "text", "str", "The answer (streamed word by word)."),
    Opt("--model", "model", "str", "Model name to report (default: the requested one)."),
    Opt("--latency", "latency", "float", "Seconds before the status line.", default=0.0, lo=0,
        hi=MAX_SECONDS),
    Opt("--ttft", "ttft", "float", "Seconds before the first streamed token.", default=0.0,
        lo=0, hi=MAX_SECONDS),
    Opt("--tps", "tps", "float", "Tokens per second (default: no pacing).", lo=0),
    Opt("--failure-rate", "failure_rate", "float", "Probability of --failure-status.",
        default=0.0, lo=0, hi=1),
    Opt("--failure-status", "failure_status", "int", "Status of random failures.",
        default=500, lo=100, hi=599),
    Opt("--seed", "seed", "int", "Seed of the random failures.", default=0),
    Opt("--statuses", "statuses", "str", "Scripted statuses, e.g. 500,500,200.",
        metavar="LIST"),
    Opt("--retry-after", "retry_after", "str",
        "Retry-After header on error responses: seconds or an HTTP date.", metavar="VALUE"),
    Opt("--retry-after-ms", "retry_after_ms", "int",
        "retry-after-ms header on error responses.", lo=0),
    Opt("--fault", "fault", "str",
        f"Misbehaviour applied to every answer: {', '.join(SIM_FAULTS)}.", metavar="FAULT"),
    Opt("--fault-after-tokens", "fault_after_tokens", "int", "Tokens before a stream fault.",
        default=2, lo=0),
    Opt("--health-status", "health_status", "int",
        "Status of the health endpoint (default: 200).", lo=100, hi=599),
    Opt("--remaining-requests", "remaining_requests", "int",
        "Requests left, in rate-limit headers.", lo=0),
    Opt("--remaining-tokens", "remaining_tokens", "int", "Tokens left, in rate-limit headers.",
        lo=0),
    Opt("--requests-reset", "requests_reset", "float", "Seconds until requests refill.",
        default=1.0, lo=0),
    Opt("--tokens-reset", "tokens_reset", "float", "Seconds until tokens refill.",
        default=60.0, lo=0),
    Opt("--quiet", "quiet", "flag", "Do not log each request to stderr."),
)  # fmt: skip

TOP: tuple[Param, ...] = (Opt("--version", "version", "flag", "Print the version and exit."),)


def by_flag(params: Sequence[Param]) -> dict[str, Opt]:
    """Each option of ``params`` under each of its flags (``--system`` and ``-s``)."""
    return {flag: p for p in params if isinstance(p, Opt) for flag in p.flags}


def defaults(params: Sequence[Param]) -> dict[str, object]:
    """What a command receives for each parameter not given on the command line."""
    return {p.param: p.default if isinstance(p, Opt) else None for p in params}
