"""Exit codes, and the one place where failures become them.

Every expected failure ends as one line on stderr and one of the codes below, never a
traceback: :func:`handled` maps the errors of the core (configuration, prompt, routing) inside
a command, :func:`guarded` is the last line of defence around the whole process (Ctrl-C,
SIGTERM, a closed stdout, a bug), and :func:`click_errors` maps Typer's usage errors.
``failover health`` passes its own codes to :func:`handled` (monitoring-plugin conventions).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from .output import say, scrub

EXIT_OK = 0
EXIT_FAILED = 1  # no provider could answer
EXIT_USAGE = 2  # usage or configuration error
EXIT_REJECTED = 3  # the request itself was rejected
EXIT_BUDGET = 4  # refused by the budget: every provider that might answer would exceed it
EXIT_INTERRUPTED = 130  # Ctrl-C
EXIT_BROKEN_PIPE = 141  # stdout closed early (e.g. `| head -c1`), as if killed by SIGPIPE
EXIT_TERMINATED = 143  # SIGTERM (timeout, systemd, Kubernetes), as if killed by it
HEALTH_UNKNOWN = 3  # `failover health`: configuration error (and a failure to check)


class Terminated(BaseException):
    """SIGTERM arrived. Unwinds like Ctrl-C (state is saved), then exits 143."""


class BadOption(ValueError):
    """An option's value does not fit the chain: a usage error (exit 2) that Typer reports,
    naming ``option``. Raised before standard input is read, so Typer can run the command
    again (the Typer-free ``ask`` hands such a command line to Typer)."""

    def __init__(self, message: str, option: str) -> None:
        super().__init__(message)
        self.option = option


class UnknownProvider(BadOption):
    """A provider name given on the command line is not in the chain (a usage error)."""


def exit_code_of(exc: BaseException) -> int:
    """The code a failed request exits with (also put in ``--json`` error output)."""
    from ..errors import BudgetExceeded, RequestRejected

    if isinstance(exc, BudgetExceeded):
        return EXIT_BUDGET
    return EXIT_REJECTED if isinstance(exc, RequestRejected) else EXIT_FAILED


def silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


@contextmanager
def handled(*, config_exit: int = EXIT_USAGE, failure_exit: int = EXIT_FAILED) -> Iterator[None]:
    """Turn every expected failure into one line on stderr and an exit code (no traceback)."""
    from ..errors import (
        BudgetExceeded,
        ConfigError,
        FailoverError,
        RequestRejected,
        RoutingError,
    )
    from ..prompt import PromptError

    try:
        yield
    except KeyboardInterrupt:
        say("error", "interrupted")
        raise SystemExit(EXIT_INTERRUPTED) from None
    except Terminated:
        say("error", "terminated")
        raise SystemExit(EXIT_TERMINATED) from None
    except BrokenPipeError:
        silence_stdout()
        raise SystemExit(EXIT_BROKEN_PIPE) from None
    except ConfigError as exc:
        for problem in exc.problems:
            say("error", str(problem))
        say("hint", "fix the configuration; `failover config validate` lists every problem")
        raise SystemExit(config_exit) from None
    except PromptError as exc:
        say("error", str(exc))
        raise SystemExit(EXIT_USAGE) from None
    except RequestRejected as exc:
        say("error", str(exc))
        say("hint", "the request was not retried: change it (prompt, --max-tokens, ...)")
        raise SystemExit(EXIT_REJECTED) from None
    except BudgetExceeded as exc:
        say("error", str(exc))
        say("hint", "`failover status` shows the spend; limits are in `budget:` (UTC periods)")
        raise SystemExit(EXIT_BUDGET) from None
    except RoutingError as exc:
        say("error", str(exc))
        say("hint", "`failover health` checks every provider; -v shows the route")
        raise SystemExit(failure_exit) from None
    except FailoverError as exc:
        say("error", str(exc))
        raise SystemExit(failure_exit) from None


def run_async(coro: Any) -> Any:
    """Run ``coro`` in a new event loop; a SIGTERM cancels it and raises Terminated."""
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
    code. A BadOption goes through: the caller reports it (see :mod:`failover_cli.cli.fast`)."""
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
        say("error", "terminated")
        sys.exit(EXIT_TERMINATED)
    except BrokenPipeError:
        silence_stdout()
        sys.exit(EXIT_BROKEN_PIPE)
    except SystemExit as exc:
        if exc.code not in (0, None, EXIT_BROKEN_PIPE) and _silenced_by_rich(stdout):
            sys.exit(EXIT_BROKEN_PIPE)
        raise
    except BadOption:
        raise  # a usage error for the caller to report
    except Exception as exc:  # a bug: one line, no locals; FAILOVER_DEBUG=1 for the traceback
        if os.environ.get("FAILOVER_DEBUG"):
            raise
        print(
            f"failover: internal error: {type(exc).__name__}: {scrub(str(exc))} "
            "(FAILOVER_DEBUG=1 shows the traceback)",
            file=sys.stderr,
        )
        sys.exit(EXIT_FAILED)


# --- Typer's usage errors -----------------------------------------------------------------------


@contextmanager
def click_errors() -> Iterator[None]:
    """Around the Typer app: a usage error is one line on stderr and exit 2; help that met a
    closed stdout exits 141. Only called once Typer is imported."""
    from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError
    from typer._click.utils import PacifyFlushWrapper
    from typer.exceptions import Abort

    try:
        yield
    except SystemExit:
        if isinstance(sys.stdout, PacifyFlushWrapper):  # Typer met a closed stdout: exit 1
            raise SystemExit(EXIT_BROKEN_PIPE) from None
        raise
    except NoArgsIsHelpError as exc:
        raise SystemExit(exc.exit_code) from None  # the help is already printed
    except ClickException as exc:
        say("error", _usage_line(exc, exc.ctx if isinstance(exc, UsageError) else None))
        raise SystemExit(exc.exit_code) from None
    except Abort:
        raise SystemExit(EXIT_FAILED) from None


def _usage_line(exc: Any, ctx: Any) -> str:
    """``exc``'s message, on one line, and where help is."""
    message = " ".join(exc.format_message().split())
    if ctx is None:
        return message
    command = ctx.command_path.partition(" ")[2]
    prefix = f"{command}: " if command else ""
    return f"{prefix}{message} (see '{ctx.command_path} --help')"
