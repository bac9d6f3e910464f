"""``failover chat``: a conversation typed at a prompt, each answer streamed through the chain.

Every turn is an ``ask`` of its own (the same route display, fail-over and state saving,
through :class:`failover_cli.cli.ask.Session`) whose request carries the earlier turns, so a
conversation begun on one provider goes on on another when the first is down; each answered
turn is recorded in the history (:mod:`failover_cli.cli.conversation`) unless ``--no-log``.

Keys: line editing and recall with readline where Python has it; ``/exit`` (or ``/quit``) or
Ctrl-D ends the session (exit 0); Ctrl-C during an answer stops that answer and returns to
the prompt; Ctrl-C at the prompt ends the session with exit 130, as an interrupted command.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from .ask import Session
from .ask_input import MAX_STDIN
from .exits import EXIT_INTERRUPTED, handled
from .output import say

PROMPT = "> "
EXITS = ("/exit", "/quit")
HELP = "/exit or Ctrl-D ends the chat; Ctrl-C stops an answer (at the prompt: ends the chat)"


def run_chat(
    *,
    system: str | None = None,
    max_tokens: int = 1024,
    temperature: float | None = None,
    provider: Sequence[str] | None = None,
    model: Sequence[str] | None = None,
    timeout: float | None = None,
    wait: float | None = None,
    verbose: bool = False,
    usage: bool = False,
    continue_last: bool = False,
    cid: str | None = None,
    no_log: bool = False,
    config: str | None = None,
    state: str | None = None,
) -> None:
    """Chat until ``/exit``, end of input or Ctrl-C at the prompt (see ``failover chat
    --help``); BadOption for a bad ``provider``, ``model``, ``cid`` or nothing to continue."""
    with handled():
        session = Session.start(
            config=config, state=state, continue_last=continue_last, cid=cid, no_log=no_log,
            provider=provider, model=model, max_tokens=max_tokens, temperature=temperature,
            timeout=timeout, wait=wait,
        )  # fmt: skip
        interactive = _isatty(sys.stdin)
        if interactive:
            _line_editing()
            talk = session.talk
            earlier = f", {len(talk.earlier)} earlier turns" if talk.earlier else ""
            say("note", f"conversation {talk.cid}{earlier}; {HELP}")
        while True:
            text = _read_turn(PROMPT if interactive else "")
            if text is None:
                return
            if text:
                _turn(session, text, system, verbose=verbose, usage=usage)


def _read_turn(prompt: str) -> str | None:
    """The next prompt typed (stripped), or None when the chat ends (``/exit``, EOF)."""
    try:
        line = input(prompt)
    except EOFError:
        if prompt:
            print(flush=True)  # end the prompt's line
        return None
    except KeyboardInterrupt:
        print(flush=True)
        raise SystemExit(EXIT_INTERRUPTED) from None
    text = line.strip()
    if text in EXITS:
        return None
    if text == "/help":
        say("note", HELP)
        return ""
    if len(text.encode("utf-8", "replace")) > MAX_STDIN:
        say("error", f"that prompt is larger than {MAX_STDIN >> 20} MiB; send it in parts")
        return ""
    return text


def _turn(session: Session, text: str, system: str | None, *, verbose: bool, usage: bool) -> None:
    """Send one turn with the earlier ones; a failure or Ctrl-C ends the turn, not the chat."""
    from ..errors import FailoverError

    talk = session.talk
    request = session.request(text, system)
    try:
        result = session.send(request, stream=True, json_out=False, verbose=verbose, usage=usage)
    except KeyboardInterrupt:
        print(flush=True)
        say("note", "answer stopped")
        return
    except FailoverError as exc:  # routing failed: say so, keep the conversation going
        say("error", str(exc))
        talk.record_failure(text, request["system"], exc)
        return
    talk.record(text, request["system"], result)


def _isatty(stream: Any) -> bool:
    try:
        return stream is not None and stream.isatty()
    except (AttributeError, ValueError):
        return False


def _line_editing() -> None:
    """Line editing and recall for input(), where Python has readline."""
    try:
        import readline  # noqa: F401 - importing it is what enables it
    except ImportError:
        pass
