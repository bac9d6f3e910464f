"""The half of the command line that does not need Typer: output streams, the mapping of
failures to one line and an exit code, and the work of ``failover ask``.

``failover ask`` is the command people run in pipelines, so its start-up counts: with the
options :mod:`failover_cli.fast_ask` understands it runs from here without importing Typer
(about 12 ms); everything else goes through :mod:`failover_cli.cli`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

    from .config import Config
    from .protocols import StateStore

EXIT_OK = 0
EXIT_FAILED = 1  # no provider could answer
EXIT_USAGE = 2  # usage or configuration error
EXIT_REJECTED = 3  # the request itself was rejected
EXIT_INTERRUPTED = 130  # Ctrl-C
EXIT_BROKEN_PIPE = 141  # stdout closed early (e.g. `| head -c1`), as if killed by SIGPIPE


class UnknownProvider(ValueError):
    """A provider name given on the command line is not in the chain (a usage error)."""

    def __init__(self, message: str, option: str) -> None:
        super().__init__(message)
        self.option = option


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
        """One ``failover: KIND: text`` line on stderr."""
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

    return asyncio.run(coro)


# --- wiring helpers ---------------------------------------------------------------------------


def _load_config(path: str | None) -> Config:
    from .config import load_config
    from .paths import cache_dir

    return load_config(path, cache_dir=cache_dir())


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


def _redact_url(location: str) -> str:
    """A state URL with any password replaced (``redis://user:***@host``)."""
    from urllib.parse import urlsplit, urlunsplit

    if "://" not in location:
        return location
    parts = urlsplit(location)
    if parts.password is None:
        return location
    user = parts.username or ""
    host = parts.hostname or ""
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def _print_json(obj: Any) -> None:
    import json

    _Answer().write(json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


# --- ask ----------------------------------------------------------------------------------------


def run_ask(
    prompt: str | None = None,
    *,
    system: str | None = None,
    max_tokens: int = 1024,
    temperature: float | None = None,
    provider: Sequence[str] | None = None,
    timeout: float | None = None,
    wait: float | None = None,
    no_stream: bool = False,
    json_out: bool = False,
    verbose: bool = False,
    config: str | None = None,
    state: str | None = None,
) -> None:
    """Ask the chain one question; the answer streams to stdout as it arrives. Raises
    SystemExit with the documented code on failure, UnknownProvider for a bad ``provider``."""
    with _handled():
        from .prompt import read_prompt

        cfg = _load_config(config)
        only = _check_names(cfg, provider, "--provider")
        stdin = None if sys.stdin is None else getattr(sys.stdin, "buffer", None)
        text = read_prompt(prompt, stdin)
        _run_async(
            _ask(
                cfg,
                _state_location(state, cfg),
                dict(
                    prompt=text,
                    max_tokens=max_tokens,
                    system=system,
                    temperature=temperature,
                    timeout=timeout,
                    max_wait=wait,
                    only=only,
                ),
                stream=not no_stream,
                json_out=json_out,
                verbose=verbose,
            )
        )


async def _ask(
    cfg: Config,
    location: str | None,
    request: dict[str, Any],
    *,
    stream: bool,
    json_out: bool,
    verbose: bool,
) -> None:
    from .errors import RoutingError
    from .router import FailoverRouter

    answer = _Answer()
    animate = _styled(sys.stderr)
    display: Any = _QueuedNote()  # without a trace or spinner, still say why nothing happens
    if verbose or animate:
        from .render import RouteDisplay

        display = RouteDisplay(
            _Ui.err(), verbose=verbose, animate=animate, answer=None if json_out else answer
        )
    store = _open_store(location)
    try:
        router = FailoverRouter(
            cfg, store=store, listeners=[display], autoflush=False, on_warning=_Ui.warn
        )
    except BaseException:
        _close_store(store)
        raise
    display.start("asking…")
    try:
        if stream and not json_out:
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
                _print_json(_error_json(exc))
            raise
        display.stop()
        if json_out:
            _print_json(result.to_dict())
        else:
            answer.write(result.text)
            answer.finish_line()
    finally:
        display.stop()
        await router.aclose()  # the one save of this invocation, also after Ctrl-C
        _close_store(store)


class _QueuedNote:
    """The plain-output route listener: one note when the request starts waiting."""

    def __init__(self) -> None:
        self.noted = False

    def start(self, text: str) -> None:
        """Nothing to animate."""

    def stop(self) -> None:
        """Nothing to stop."""

    def __call__(self, event: Any) -> None:
        from .types import Queued

        if isinstance(event, Queued) and not self.noted:
            import time

            self.noted = True
            left = max(0.0, event.until - time.time())
            _Ui.say(
                "note",
                f"every provider is down; waiting for one to recover (next try in {left:.1f} s;"
                " --wait 0 fails at once)",
            )


def _error_json(exc: Exception) -> dict[str, Any]:
    from .errors import RequestRejected

    attempts = getattr(exc, "attempts", ())
    return {
        "error": {
            "type": type(exc).__name__,
            "message": str(exc),
            "exit_code": EXIT_REJECTED if isinstance(exc, RequestRejected) else EXIT_FAILED,
        },
        "attempts": [a.to_dict() for a in attempts],
    }


# --- the last line of defence -------------------------------------------------------------------


def _scrub(text: str) -> str:
    from .errors import redact

    secrets = [v for k, v in os.environ.items() if k.endswith(("KEY", "TOKEN", "SECRET"))]
    return redact(text, secrets)


def guarded(main: Callable[[], Any]) -> None:
    """Run ``main``; a Ctrl-C, a closed stdout or a bug becomes one line and an exit code."""
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(EXIT_INTERRUPTED)
    except BrokenPipeError:
        _silence_stdout()
        sys.exit(EXIT_BROKEN_PIPE)
    except UnknownProvider:
        raise  # a usage error for the caller to report (see fast_ask)
    except Exception as exc:  # a bug: one line, no locals; FAILOVER_DEBUG=1 for the traceback
        if os.environ.get("FAILOVER_DEBUG"):
            raise
        print(
            f"failover: internal error: {type(exc).__name__}: {_scrub(str(exc))} "
            "(FAILOVER_DEBUG=1 shows the traceback)",
            file=sys.stderr,
        )
        sys.exit(EXIT_FAILED)
