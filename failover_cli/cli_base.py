"""The half of the command line that does not need Typer: output streams, the mapping of
failures to one line and an exit code, and the work of ``failover ask``.

``failover ask`` is the command people run in pipelines, so its start-up counts: with the
options :mod:`failover_cli.fast_ask` understands it runs from here without importing Typer
(about 12 ms); everything else goes through :mod:`failover_cli.cli`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, BinaryIO, cast

if TYPE_CHECKING:
    from rich.console import Console

    from .config import Config
    from .errors import RoutingError
    from .protocols import StateStore
    from .types import Attempt

EXIT_OK = 0
EXIT_FAILED = 1  # no provider could answer
EXIT_USAGE = 2  # usage or configuration error
EXIT_REJECTED = 3  # the request itself was rejected
EXIT_INTERRUPTED = 130  # Ctrl-C
EXIT_BROKEN_PIPE = 141  # stdout closed early (e.g. `| head -c1`), as if killed by SIGPIPE
EXIT_TERMINATED = 143  # SIGTERM (timeout, systemd, Kubernetes), as if killed by it

# Bounds of the numeric options, shared by the Typer options and the Typer-free ``ask``.
MAX_TOKENS = 1_000_000  # more than any model generates in one answer
MAX_SECONDS = 86_400.0  # a day: the longest --timeout, --wait or --watch that makes sense
MAX_STDIN = 16 << 20  # bytes of piped prompt; a large diff is well under it
_STDIN_CHUNK = 1 << 20


class Terminated(BaseException):
    """SIGTERM arrived. Unwinds like Ctrl-C (state is saved), then exits 143."""


class BadOption(ValueError):
    """An option's value does not fit the chain (a usage error Typer reports, naming
    ``option``). Raised before standard input is read, so Typer can run the command again."""

    def __init__(self, message: str, option: str) -> None:
        super().__init__(message)
        self.option = option


class UnknownProvider(BadOption):
    """A provider name given on the command line is not in the chain (a usage error)."""


# --- output and exit codes --------------------------------------------------------------------


def _styled(stream: Any) -> bool:
    """Whether ``stream`` gets colour and animation: a terminal, without NO_COLOR or
    TERM=dumb. When it does not, plain lines are written without importing Rich at all."""
    try:
        tty = stream is not None and stream.isatty()
    except (AttributeError, ValueError):
        tty = False
    return tty and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"


class _Answer:
    """Writes answer text to stdout as UTF-8 as it arrives, flushing each piece; knows whether
    the current line is unfinished (so trace lines on a shared terminal start cleanly)."""

    def __init__(self) -> None:
        self.stream = sys.stdout
        self.buffer = getattr(self.stream, "buffer", None)
        try:
            self.isatty = self.stream.isatty()
        except (AttributeError, ValueError):
            self.isatty = False
        self.at_line_start = True

    def write(self, text: str) -> None:
        if not text:
            return
        if self.buffer is not None:
            self.buffer.write(text.encode("utf-8", "replace"))
            self.buffer.flush()
        else:
            self.stream.write(text)
            self.stream.flush()
        self.at_line_start = text.endswith("\n")

    def finish_line(self) -> None:
        """End the answer with a newline unless it already ends with one."""
        if not self.at_line_start:
            self.write("\n")


class _Ui:
    """The stderr console, created on first use (Rich is imported lazily)."""

    _err: Console | None = None
    _warned: set[str] = set()  # noqa: RUF012 - process-wide by design

    @classmethod
    def err(cls) -> Console:
        if cls._err is None:
            from .render import make_console

            cls._err = make_console(stderr=True)
        return cls._err

    @classmethod
    def say(cls, kind: str, text: str) -> None:
        """One ``failover: KIND: text`` line on stderr (secrets redacted)."""
        text = scrub(text)
        if not _styled(sys.stderr):
            print(f"failover: {kind}: {text}", file=sys.stderr, flush=True)
            return
        from .render import message

        message(cls.err(), kind, text)

    @classmethod
    def warn(cls, text: str) -> None:
        """Print a warning once per process (the store and the tracker may both report)."""
        if text not in cls._warned:
            cls._warned.add(text)
            cls.say("warning", text)


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


@contextmanager
def _handled(*, config_exit: int = EXIT_USAGE, failure_exit: int = EXIT_FAILED) -> Iterator[None]:
    """Turn every expected failure into one line on stderr and an exit code (no traceback)."""
    from .errors import ConfigError, FailoverError, RequestRejected, RoutingError
    from .prompt import PromptError

    try:
        yield
    except KeyboardInterrupt:
        _Ui.say("error", "interrupted")
        raise SystemExit(EXIT_INTERRUPTED) from None
    except Terminated:
        _Ui.say("error", "terminated")
        raise SystemExit(EXIT_TERMINATED) from None
    except BrokenPipeError:
        _silence_stdout()
        raise SystemExit(EXIT_BROKEN_PIPE) from None
    except ConfigError as exc:
        for problem in exc.problems:
            _Ui.say("error", str(problem))
        _Ui.say("hint", "fix the configuration; `failover config validate` lists every problem")
        raise SystemExit(config_exit) from None
    except PromptError as exc:
        _Ui.say("error", str(exc))
        raise SystemExit(EXIT_USAGE) from None
    except RequestRejected as exc:
        _Ui.say("error", str(exc))
        _Ui.say("hint", "the request was not retried: change it (prompt, --max-tokens, ...)")
        raise SystemExit(EXIT_REJECTED) from None
    except RoutingError as exc:
        _Ui.say("error", str(exc))
        _Ui.say("hint", "`failover health` checks every provider; -v shows the route")
        raise SystemExit(failure_exit) from None
    except FailoverError as exc:
        _Ui.say("error", str(exc))
        raise SystemExit(failure_exit) from None


def _run_async(coro: Any) -> Any:
    import asyncio

    return asyncio.run(_terminable(coro))


async def _terminable(coro: Any) -> Any:
    """Await ``coro``; a SIGTERM cancels it like Ctrl-C does (its ``finally`` blocks run,
    state is saved), then raises Terminated."""
    import asyncio
    import signal

    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    hit: list[bool] = []

    def terminate() -> None:
        if not hit and task is not None:
            hit.append(True)
            task.cancel()

    previous = signal.getsignal(signal.SIGTERM)
    try:
        loop.add_signal_handler(signal.SIGTERM, terminate)
    except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or Windows
        return await coro
    try:
        result = await coro
    except asyncio.CancelledError:
        if hit:
            raise Terminated from None
        raise
    finally:
        loop.remove_signal_handler(signal.SIGTERM)
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    if hit:
        raise Terminated
    return result


# --- wiring helpers ---------------------------------------------------------------------------


def _load_config(path: str | None) -> Config:
    from .config import key_env, load_config
    from .paths import cache_dir

    cfg = load_config(path, cache_dir=cache_dir())
    _Secrets.watch([key_env(p) for p in cfg.providers])
    return cfg


def _check_names(config: Config, names: Sequence[str] | None, option: str) -> list[str] | None:
    """Validate provider names given on the command line (a usage error if unknown)."""
    if not names:
        return None
    import difflib

    known = [p.name for p in config.providers]
    for name in names:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise UnknownProvider(
                f"no provider named '{name}'{hint}; the chain has: {', '.join(known)}", option
            )
    return list(dict.fromkeys(names))


def _state_location(option: str | None, config: Config) -> str | None:
    """``--state`` / $FAILOVER_STATE, else the configuration's state.url or state.path."""
    return option or config.state.url or config.state.path or None


def _open_store(location: str | None) -> StateStore | None:
    """The state store, or None (with one warning) when it cannot be opened."""
    from .errors import StateError
    from .store import open_store

    try:
        return open_store(location, on_warning=_Ui.warn)
    except StateError as exc:
        _Ui.warn(f"state unavailable, continuing without it: {exc}")
        return None


def _close_store(store: StateStore | None) -> None:
    from .errors import StateError

    if store is not None:
        try:
            store.close()
        except StateError as exc:
            _Ui.warn(str(exc))


_SECRET_PARAMS = ("key", "token", "secret", "password", "passwd", "sig", "auth", "credential")


def _redact_url(location: str) -> str:
    """A URL with its password (or a user name without one) and secret-looking query values
    replaced (``redis://user:***@host``, ``https://***@host``, ``https://host/v1?key=***``)."""
    from urllib.parse import urlsplit, urlunsplit

    if "://" not in location:
        return location
    try:
        parts = urlsplit(location)
    except ValueError:
        return "***"
    userinfo, at, host = parts.netloc.rpartition("@")
    if at:  # a user name alone is often a token (https://TOKEN@host)
        user, colon, _ = userinfo.partition(":")
        parts = parts._replace(netloc=f"{user}:***@{host}" if colon else f"***@{host}")
    if parts.query:
        parts = parts._replace(query="&".join(map(_redact_param, parts.query.split("&"))))
    return urlunsplit(parts)


def _redact_param(pair: str) -> str:
    name, eq, value = pair.partition("=")
    secret = any(word in name.lower() for word in _SECRET_PARAMS)
    return f"{name}=***" if eq and value and secret else pair


# --- secrets and numbers never printed --------------------------------------------------------

_SECRET_SUFFIXES = ("KEY", "TOKEN", "SECRET", "PASSWORD")
_MIN_SECRET = 8  # shorter values are not keys, and redacting them would mangle output


class _Secrets:
    """Values never printed: every variable whose name ends like a secret's, and the key
    variables of the chain in use (:meth:`watch`), in every spelling an error message could
    carry them (stripped of stray whitespace, escaped, percent-encoded)."""

    names: set[str] = set()  # noqa: RUF012 - process-wide by design
    _cache: tuple[tuple[tuple[str, str], ...], list[str]] = ((), [])

    @classmethod
    def watch(cls, names: Sequence[str | None]) -> None:
        cls.names.update(n for n in names if n)

    @classmethod
    def values(cls) -> list[str]:
        env = os.environ
        picked = tuple(
            (k, v)
            for k, v in env.items()
            if v and (k in cls.names or k.upper().endswith(_SECRET_SUFFIXES))
        )
        if picked != cls._cache[0]:
            spellings = {s for _, v in picked for s in _spellings(v) if len(s) >= _MIN_SECRET}
            cls._cache = (picked, sorted(spellings, key=len, reverse=True))
        return cls._cache[1]


def _spellings(value: str) -> set[str]:
    """``value`` as it may appear in a message: raw, stripped, escaped, JSON, URL-encoded."""
    import json
    from urllib.parse import quote

    out: set[str] = set()
    for v in {value, value.strip()}:
        out |= {v, v.encode("unicode_escape").decode("ascii"), json.dumps(v)[1:-1]}
        out.add(quote(v, safe=""))
    return out


def scrub(text: str, secrets: Sequence[str] | None = None) -> str:
    """``text`` with every secret (see :class:`_Secrets`) replaced by ``[REDACTED]``."""
    from .errors import redact

    return redact(text, _Secrets.values() if secrets is None else secrets)


def clean(obj: Any, secrets: Sequence[str] | None = None, *, finite: bool = True) -> Any:
    """A copy of ``obj`` (JSON-ready data) fit to print: secrets redacted from every string
    and, with ``finite``, NaN or infinite numbers (not JSON) turned into null."""
    import math

    secrets = _Secrets.values() if secrets is None else secrets
    if isinstance(obj, str):
        return scrub(obj, secrets)
    if isinstance(obj, float) and finite and not math.isfinite(obj):
        return None
    if isinstance(obj, Mapping):
        return {k: clean(v, secrets, finite=finite) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [clean(v, secrets, finite=finite) for v in obj]
    return obj


def json_text(obj: Any, *, indent: int | None = 2) -> str:
    """``obj`` as standard JSON (never NaN or Infinity), secrets redacted."""
    import json

    return json.dumps(clean(obj), indent=indent, ensure_ascii=False, allow_nan=False)


def _print_json(obj: Any) -> None:
    _Answer().write(json_text(obj) + "\n")


# --- ask ----------------------------------------------------------------------------------------


def run_ask(
    prompt: str | None = None,
    *,
    system: str | None = None,
    max_tokens: int = 1024,
    temperature: float | None = None,
    provider: Sequence[str] | None = None,
    model: Sequence[str] | None = None,
    attach: Sequence[str] | None = None,
    schema: str | None = None,
    timeout: float | None = None,
    wait: float | None = None,
    no_stream: bool = False,
    json_out: bool = False,
    verbose: bool = False,
    config: str | None = None,
    state: str | None = None,
) -> None:
    """Ask the chain one question; the answer streams to stdout as it arrives. Raises
    SystemExit with the documented code on failure, BadOption (UnknownProvider) for a bad
    ``provider``, ``model`` or ``schema``, before standard input is read."""
    from .errors import AllProvidersFailed

    with _handled():
        from .prompt import STDIN_MARKER, read_prompt

        cfg = _load_config(config)
        only = _check_names(cfg, provider, "--provider")
        models = model_overrides(cfg, model, only)
        response_format = _schema(schema) if schema is not None else None
        stdin = _stdin()
        attachments: list[Any] = []
        if attach:
            from .attach import read_attachments

            if STDIN_MARKER in attach:
                if prompt in (None, STDIN_MARKER):
                    from .prompt import PromptError

                    raise PromptError(
                        "'-a -' reads an attachment from standard input, so the prompt cannot "
                        'come from it too: give the prompt as an argument (failover ask -a - "...")'
                    )
                stdin = None  # the attachment's: not appended to the prompt
            attachments = read_attachments(attach, _raw_stdin(), text_limit=MAX_STDIN)
        text = read_prompt(prompt, stdin)
        request: dict[str, Any] = dict(
            prompt=text,
            max_tokens=max_tokens,
            system=system,
            temperature=temperature,
            timeout=timeout,
            max_wait=wait,
            only=only,
        )
        shown: dict[str, Any] = {}
        if attachments:
            from .attach import user_message

            request["prompt"] = None
            request["messages"] = [user_message(text, attachments)]
            shown["attachments"] = [a.summary() for a in attachments]
        if response_format is not None:
            request["response_format"] = response_format
        if models:
            request["models"] = models
        location = _state_location(state, cfg)
        try:
            _run_async(
                _ask(cfg, location, request, stream=not no_stream, json_out=json_out,
                     verbose=verbose, structured=response_format is not None, shown=shown)
            )  # fmt: skip
        except AllProvidersFailed as exc:
            _explain_keys(cfg, exc)
            raise


def _schema(value: str) -> dict[str, Any]:
    """``--schema``'s response format; BadOption (a usage error) when it is not usable."""
    from .attach import AttachmentError, load_schema

    try:
        return load_schema(value)
    except AttachmentError as exc:
        raise BadOption(str(exc).removeprefix("--schema").lstrip(": "), "--schema") from None


# --- -m/--model ---------------------------------------------------------------------------------

# A bare model id goes to the chain's providers of the kind its name starts like.
MODEL_PREFIXES: tuple[tuple[tuple[str, ...], str], ...] = (
    (("claude",), "anthropic"),
    (("gpt", "chatgpt", "o1", "o3", "o4"), "openai"),
    (("gemini",), "gemini"),
)


def model_kind(model: str) -> str | None:
    """The provider kind a bare ``-m MODEL`` is for, by the start of its name, or None."""
    lowered = model.lower()
    return next((kind for starts, kind in MODEL_PREFIXES if lowered.startswith(starts)), None)


def model_overrides(
    config: Config, specs: Sequence[str] | None, only: Sequence[str] | None
) -> dict[str, str] | None:
    """Provider name -> this call's model, from ``-m`` values (see ``failover ask --help``):
    ``NAME=MODEL`` for a named provider; a bare ``MODEL`` for the one ``-p`` provider, else
    for every provider (among ``-p`` ones, if given) of the kind ``MODEL`` starts like.
    Raises UnknownProvider or BadOption (usage errors) before anything is read or sent."""
    if not specs:
        return None
    kinds = {p.name: p.kind for p in config.providers}
    out: dict[str, str] = {}
    for spec in specs:
        name, eq, model = spec.partition("=")
        if not eq:
            name, model = "", spec
        if not model.strip():
            raise BadOption(f"'{spec}' names no model (-m MODEL or -m NAME=MODEL)", "--model")
        if eq:
            _check_names(config, [name], "--model")
            targets = [name]
        elif only and len(only) == 1:
            targets = list(only)
        else:
            targets = _providers_for(model, kinds, only)
        for target in targets:
            if out.setdefault(target, model) != model:
                raise BadOption(
                    f"two models for {target}: '{out[target]}' and '{model}'", "--model"
                )
    return out


def _providers_for(model: str, kinds: Mapping[str, str], only: Sequence[str] | None) -> list[str]:
    kind = model_kind(model)
    if kind is None:
        starts = "; ".join(f"{', '.join(p + '*' for p in s)} {k}" for s, k in MODEL_PREFIXES)
        raise BadOption(
            f"cannot tell which provider '{model}' is for (a bare model goes by its name: "
            f"{starts}); give -m NAME={model}, or one -p NAME",
            "--model",
        )
    pool = list(only) if only else list(kinds)
    targets = [n for n in pool if kinds[n] == kind]
    if not targets:
        where = "the providers given with --provider" if only else "the chain"
        raise BadOption(
            f"'{model}' is for a {kind} provider, but {where} has none ({', '.join(pool)}); "
            f"give -m NAME={model}",
            "--model",
        )
    return targets


# --- standard input -----------------------------------------------------------------------------


class _BoundedStdin:
    """Standard input as :func:`failover_cli.prompt.read_prompt` reads it, read in chunks and
    refused past ``limit`` bytes (memory stays bounded whatever is piped) or when it holds a
    NUL byte (binary data, not a prompt)."""

    def __init__(self, raw: BinaryIO, limit: int = MAX_STDIN) -> None:
        self.raw = raw
        self.limit = limit

    def fileno(self) -> int:
        return self.raw.fileno()

    def read(self) -> bytes:
        from .prompt import PromptError

        chunks: list[bytes] = []
        size = 0
        while size <= self.limit:
            chunk = self.raw.read(min(_STDIN_CHUNK, self.limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > self.limit:
            raise PromptError(
                f"standard input is larger than {self.limit >> 20} MiB, the most failover "
                "sends as a prompt: trim it or send it in parts"
            )
        data = b"".join(chunks)
        nul = data.find(b"\0")
        if nul >= 0:
            raise PromptError(
                f"standard input is not text (a NUL byte at offset {nul}): failover sends "
                "UTF-8 text prompts only"
            )
        return data


def _raw_stdin() -> BinaryIO | None:
    return None if sys.stdin is None else getattr(sys.stdin, "buffer", None)


def _stdin() -> BinaryIO | None:
    raw = _raw_stdin()
    return None if raw is None else cast(BinaryIO, _BoundedStdin(raw))


# --- ask ------------------------------------------------------------------------------------------


async def _ask(
    cfg: Config,
    location: str | None,
    request: dict[str, Any],
    *,
    stream: bool,
    json_out: bool,
    verbose: bool,
    structured: bool = False,
    shown: Mapping[str, Any] | None = None,
) -> None:
    """Route ``request``; print the answer as it streams, or whole (``--json``; with
    ``structured``, the JSON answer once complete), plus ``shown`` in ``--json`` output."""
    from .errors import AllProvidersFailed, RoutingError
    from .router import FailoverRouter

    answer = _Answer()
    display = _display(verbose, None if json_out or structured else answer)
    if verbose:
        display.header(_config_line(cfg))
        if request.get("models"):
            pairs = ", ".join(f"{n}={m}" for n, m in request["models"].items())
            display.header(f"models for this call: {pairs}")
    changes = _Changes()
    store = _open_store(location)
    try:
        router = FailoverRouter(
            cfg,
            store=store,
            listeners=[display, changes],
            autoflush=False,
            on_warning=_Ui.warn,
            background_probes=False,  # one request: the next process probes on request
        )
    except BaseException:
        _close_store(store)
        raise
    display.start("asking…")
    try:
        if stream and not json_out and not structured:
            route_stream = router.stream(**request)
            chunks = aiter(route_stream)
            try:
                async for chunk in chunks:
                    display.stop()
                    answer.write(chunk)
            finally:
                await chunks.aclose()  # type: ignore[attr-defined]
            answer.finish_line()
            return
        try:
            if stream:
                result = await router.stream(**request).collect()
            else:
                result = await router.route(**request)
        except RoutingError as exc:
            if json_out:
                keys = _key_advice(cfg, exc) if isinstance(exc, AllProvidersFailed) else None
                _print_json(_error_json(exc, changes, keys))
            raise
        display.stop()
        parsed, problem = _structured(result.text) if structured else (None, None)
        if json_out:
            out = changes.added_to(result.to_dict())
            out.update(shown or {})
            if structured:
                out["parsed"] = parsed
            _print_json(out)
        elif structured and problem is None:
            _print_answer_json(answer, parsed)
        else:
            answer.write(result.text)
            answer.finish_line()
        if problem is not None:
            from .errors import FailoverError

            raise FailoverError(f"{result.provider} answered, but not with JSON ({problem})")
    finally:
        display.stop()
        await router.aclose()  # the one save of this invocation, also after Ctrl-C
        _close_store(store)


def _structured(text: str) -> tuple[Any, str | None]:
    """(the JSON value of a --schema answer, None), or (None, why it is not JSON)."""
    from .attach import parse_answer

    try:
        return parse_answer(text), None
    except ValueError as exc:
        return None, str(exc)


def _print_answer_json(answer: _Answer, value: Any) -> None:
    """A --schema answer on stdout: indented (and coloured, unless NO_COLOR) on a terminal,
    one line otherwise (one JSON Lines record per answer)."""
    if answer.isatty and _styled(sys.stdout):
        from .render import make_console, print_json

        print_json(make_console(stderr=False), json_text(value))
        return
    answer.write(json_text(value, indent=2 if answer.isatty else None) + "\n")


def _display(verbose: bool, answer: _Answer | None) -> Any:
    """The route listener: the trace and spinner on a terminal or with -v, else plain notes."""
    animate = _styled(sys.stderr)
    if not (verbose or animate):
        return _PlainNotes()  # without a trace or spinner, still say why nothing happens
    from .render import RouteDisplay

    return RouteDisplay(_Ui.err(), verbose=verbose, animate=animate, answer=answer, scrub=scrub)


def _config_line(cfg: Config) -> str:
    """What -v says first: where the chain comes from and its name."""
    source = cfg.source or "the built-in chain (no configuration file found)"
    return f"{source}, chain '{cfg.chain}'"


class _Changes:
    """Collects a request's stream switches and parameter adjustments for ``--json``."""

    def __init__(self) -> None:
        self.switches: list[dict[str, Any]] = []
        self.adjustments: list[dict[str, Any]] = []

    def __call__(self, event: Any) -> None:
        from .types import ParameterAdjusted, StreamSwitched

        if isinstance(event, StreamSwitched):
            self.switches.append(
                {"from": event.old, "to": event.new, "strategy": event.strategy,
                 "kept_chars": event.kept}
            )  # fmt: skip
        elif isinstance(event, ParameterAdjusted):
            self.adjustments.append(
                {"provider": event.provider, "parameter": event.parameter,
                 "action": event.action, "reason": event.reason}
            )  # fmt: skip

    def added_to(self, out: dict[str, Any]) -> dict[str, Any]:
        out.setdefault("switches", self.switches)
        out.setdefault("adjustments", self.adjustments)
        return out


class _PlainNotes:
    """The plain-output route listener: one note when the request starts waiting, one per
    mid-answer switch of provider."""

    def __init__(self) -> None:
        self.noted = False

    def start(self, text: str) -> None:
        """Nothing to animate."""

    def stop(self) -> None:
        """Nothing to stop."""

    def __call__(self, event: Any) -> None:
        from .types import Queued, StreamSwitched

        if isinstance(event, StreamSwitched):
            _Ui.say("note", switch_text(event))
        elif isinstance(event, Queued) and not self.noted:
            import time

            self.noted = True
            left = max(0.0, event.until - time.time())
            _Ui.say(
                "note",
                f"every provider is down; waiting for one to recover (next try in {left:.1f} s;"
                " --wait 0 fails at once)",
            )


def switch_text(event: Any) -> str:
    """One line on a mid-answer switch of provider (a StreamSwitched)."""
    head = f"{event.old} broke off mid-answer; switched to {event.new}"
    if event.strategy == "restart":
        return f"{head}: the answer restarts from the beginning"
    return f"{head}, which continues it ({event.strategy})"


def _error_json(
    exc: Exception, changes: _Changes | None = None, keys: tuple[str, str] | None = None
) -> dict[str, Any]:
    from .errors import RequestRejected

    attempts = getattr(exc, "attempts", ())
    error: dict[str, Any] = {
        "type": type(exc).__name__,
        "message": keys[0] if keys else str(exc),
        "exit_code": EXIT_REJECTED if isinstance(exc, RequestRejected) else EXIT_FAILED,
    }
    if keys:
        error["hint"] = keys[1]
    out: dict[str, Any] = {"error": error, "attempts": [a.to_dict() for a in attempts]}
    return changes.added_to(out) if changes is not None else out


# --- providers without a usable key -------------------------------------------------------------

_KEY_REASONS = ("no_key", "bad_key")


def _key_problem(a: Attempt) -> bool:
    """Whether this attempt found the provider without a usable API key."""
    reason = getattr(a, "reason", None)
    if reason is not None:
        return reason in _KEY_REASONS
    # Only a key problem skips a provider with an error class (breaker skips have none).
    return a.outcome == "skipped" and a.error_class is not None


def _key_advice(cfg: Config, exc: RoutingError) -> tuple[str, str] | None:
    """(error, hint) when providers could not be used for want of an API key; None when
    keys were not the problem."""
    from .config import key_env

    keyless = list(dict.fromkeys(a.provider for a in exc.attempts if _key_problem(a)))
    if not keyless:
        return None
    env_of = {p.name: key_env(p) for p in cfg.providers}
    variables = " or ".join(dict.fromkeys(v for n in keyless if (v := env_of.get(n))))
    everyone = {a.provider for a in exc.attempts} <= set(keyless)
    error = str(exc)
    if everyone:
        error = f"no provider can answer: none has an API key ({', '.join(keyless)})"
    if cfg.source is None:
        hint = (
            f"the built-in chain is in use (no configuration file found): set {variables}, "
            "or write your own chain with `failover config init`"
        )
    else:
        hint = (
            f"set {variables} (the variables {cfg.source} names; keys never live in the "
            "file); `failover config show` checks them, `failover config init` writes a "
            "starter chain"
        )
    return error, hint


def _explain_keys(cfg: Config, exc: RoutingError) -> None:
    """Say what is missing, instead of the generic failure, when keys were the problem."""
    advice = _key_advice(cfg, exc)
    if advice is None:
        return
    _Ui.say("error", advice[0])
    _Ui.say("hint", advice[1])
    raise SystemExit(EXIT_FAILED) from None


# --- the last line of defence -------------------------------------------------------------------


def _fd_identity(fd: int) -> tuple[int, int] | None:
    try:
        st = os.fstat(fd)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _silenced_by_rich(before: tuple[int, int] | None) -> bool:
    """Whether stdout was pointed at /dev/null since ``before``: what Rich does, then exits 1,
    when it finds stdout closed (Typer's help is printed by Rich)."""
    now = _fd_identity(1)
    if now is None or now == before:
        return False
    try:
        null = os.stat(os.devnull)
    except OSError:
        return False
    return now == (null.st_dev, null.st_ino)


def _on_sigterm(signum: int, frame: Any) -> None:
    raise Terminated


def _flush_stdout() -> None:
    """Flush stdout now, so a closed pipe shows here and not at interpreter exit."""
    if sys.stdout is not None:
        sys.stdout.flush()


def guarded(main: Callable[[], Any]) -> None:
    """Run ``main``; a Ctrl-C, a SIGTERM, a closed stdout or a bug becomes one line and an exit
    code."""
    import signal

    stdout = _fd_identity(1)
    try:
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:  # not the main thread
        previous = None
    try:
        _run_guarded(main, stdout)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _run_guarded(main: Callable[[], Any], stdout: tuple[int, int] | None) -> None:
    try:
        try:
            main()
        finally:
            _flush_stdout()
    except KeyboardInterrupt:
        sys.exit(EXIT_INTERRUPTED)
    except Terminated:
        _Ui.say("error", "terminated")
        sys.exit(EXIT_TERMINATED)
    except BrokenPipeError:
        _silence_stdout()
        sys.exit(EXIT_BROKEN_PIPE)
    except SystemExit as exc:
        if exc.code not in (0, None, EXIT_BROKEN_PIPE) and _silenced_by_rich(stdout):
            sys.exit(EXIT_BROKEN_PIPE)
        raise
    except BadOption:
        raise  # a usage error for the caller to report (see fast_ask)
    except Exception as exc:  # a bug: one line, no locals; FAILOVER_DEBUG=1 for the traceback
        if os.environ.get("FAILOVER_DEBUG"):
            raise
        print(
            f"failover: internal error: {type(exc).__name__}: {scrub(str(exc))} "
            "(FAILOVER_DEBUG=1 shows the traceback)",
            file=sys.stderr,
        )
        sys.exit(EXIT_FAILED)
