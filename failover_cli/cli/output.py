"""The plain side of the command line's output, without Rich: the answer written to stdout as
it arrives, one-line messages on stderr, JSON, and the secrets never printed.

Styled output (colour, spinners, tables) is drawn by :mod:`failover_cli.cli.render`, imported
only when a stream is a terminal or a table is printed: a piped ``failover ask`` never
imports Rich.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console


def animates(stream: Any) -> bool:
    """Whether ``stream`` may show a spinner or redraw in place: a terminal that is not
    TERM=dumb. NO_COLOR does not stop animation (it asks for no colour, per no-color.org)."""
    try:
        tty = stream is not None and stream.isatty()
    except (AttributeError, ValueError):
        tty = False
    return tty and not dumb_terminal()


def dumb_terminal() -> bool:
    """TERM=dumb: a terminal that takes no escape sequences at all."""
    return os.environ.get("TERM") == "dumb"


def styled(stream: Any) -> bool:
    """Whether ``stream`` gets colour: an animating terminal without NO_COLOR. When it does
    not, plain lines are written without importing Rich at all."""
    return animates(stream) and not os.environ.get("NO_COLOR")


class Answer:
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


# --- stderr -------------------------------------------------------------------------------------

_err: Console | None = None
_warned: set[str] = set()  # process-wide: the store and the tracker may both report


def err_console() -> Console:
    """The stderr console, created on first use (Rich is imported then)."""
    global _err
    if _err is None:
        from .render import make_console

        _err = make_console(stderr=True)
    return _err


def say(kind: str, text: str) -> None:
    """One ``failover: KIND: text`` line on stderr (secrets redacted)."""
    text = scrub(text)
    if not animates(sys.stderr):  # no spinner to keep clear of: a plain line, without Rich
        print(f"failover: {kind}: {text}", file=sys.stderr, flush=True)
        return
    from .render import message

    message(err_console(), kind, text)


def warn(text: str) -> None:
    """Print a warning once per process."""
    if text not in _warned:
        _warned.add(text)
        say("warning", text)


def usage_text(result: Any) -> str:
    """One line on what an answer took: ``gpt (gpt-5.4-mini): 12 input + 30 output tokens,
    $0.000123`` (a RouteResult; the cost is unknown without prices in the config)."""
    usage = result.usage
    cost = "cost unknown" if result.cost is None else f"${result.cost:.6f}"
    return (
        f"{result.provider} ({result.model}): {usage.input_tokens} input + "
        f"{usage.output_tokens} output tokens, {cost}"
    )


def note_dim(text: str) -> None:
    """A line on stderr, dim on a terminal."""
    if not styled(sys.stderr):
        print(text, file=sys.stderr, flush=True)
        return
    err_console().print(text, style="dim", markup=False, highlight=False)


def switch_text(event: Any) -> str:
    """One line on a mid-answer switch of provider (a StreamSwitched)."""
    head = f"{event.old} broke off mid-answer; switched to {event.new}"
    if event.strategy == "restart":
        return f"{head}: the answer restarts from the beginning"
    return f"{head}, which continues it ({event.strategy})"


class PlainNotes:
    """The plain-output route listener (no trace, no spinner): one note when the request
    starts waiting, one per mid-answer switch of provider."""

    def __init__(self) -> None:
        self.noted = False

    def start(self, text: str) -> None:
        """Nothing to animate."""

    def stop(self) -> None:
        """Nothing to stop."""

    def __call__(self, event: Any) -> None:
        from ..types import Queued, StreamSwitched

        if isinstance(event, StreamSwitched):
            say("note", switch_text(event))
        elif isinstance(event, Queued) and not self.noted:
            import time

            self.noted = True
            left = max(0.0, event.until - time.time())
            say(
                "note",
                f"every provider is down; waiting for one to recover (next try in {left:.1f} s;"
                " --wait 0 fails at once)",
            )


# --- secrets and numbers never printed --------------------------------------------------------

_SECRET_SUFFIXES = ("KEY", "TOKEN", "SECRET", "PASSWORD")
_MIN_SECRET = 8  # shorter values are not keys, and redacting them would mangle output


class Secrets:
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
    """``text`` with every secret (see :class:`Secrets`) replaced by ``[REDACTED]``."""
    from ..errors import redact

    return redact(text, Secrets.values() if secrets is None else secrets)


def clean(obj: Any, secrets: Sequence[str] | None = None, *, finite: bool = True) -> Any:
    """A copy of ``obj`` (JSON-ready data) fit to print: secrets redacted from every string
    and, with ``finite``, NaN or infinite numbers (not JSON) turned into null."""
    import math

    secrets = Secrets.values() if secrets is None else secrets
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


def print_json(obj: Any) -> None:
    """``obj`` on stdout as indented JSON (see :func:`json_text`)."""
    Answer().write(json_text(obj) + "\n")


_SECRET_PARAMS = ("key", "token", "secret", "password", "passwd", "sig", "auth", "credential")


def redact_url(location: str) -> str:
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
