"""Where ``failover ask`` gets its prompt: the argument, standard input, or both.

- ``failover ask "question"``: the argument (plus piped stdin, if any, appended after it);
- ``git diff | failover ask "review this"``: the argument, a blank line, then the piped text;
- ``failover ask - < prompt.txt`` or ``failover ask < prompt.txt``: standard input alone.

Standard input is read only when it is a pipe or a file, never from a terminal, so a
command run by hand does not wait for input it will never get.
"""

from __future__ import annotations

import os
import stat
from typing import BinaryIO

from .errors import FailoverError

STDIN_MARKER = "-"


class PromptError(FailoverError):
    """The prompt is missing, empty or unreadable (a usage error: exit code 2)."""


def stdin_has_data(stdin: BinaryIO) -> bool:
    """True when ``stdin`` is a pipe or a regular file (something that will reach EOF)."""
    try:
        mode = os.fstat(stdin.fileno()).st_mode
    except (OSError, ValueError, AttributeError):
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISREG(mode)


def decode_stdin(data: bytes) -> str:
    """Decode piped input as UTF-8; raise PromptError naming the first bad byte."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PromptError(
            f"standard input is not valid UTF-8 (bad byte at offset {exc.start}); "
            "convert it first, e.g. with `iconv -f latin1 -t utf-8`"
        ) from None


def read_prompt(argument: str | None, stdin: BinaryIO | None) -> str:
    """The prompt to send, from ``argument`` and/or ``stdin`` (see the module docstring).

    Raises PromptError when there is no prompt, it is blank, or stdin is not UTF-8.
    """
    piped: str | None = None
    if stdin is not None and (argument == STDIN_MARKER or stdin_has_data(stdin)):
        piped = decode_stdin(stdin.read())
    if argument == STDIN_MARKER:
        if piped is None:
            raise PromptError("'-' reads the prompt from standard input, but nothing was piped")
        text = piped
    elif argument is None:
        if piped is None:
            raise PromptError(
                'no prompt: give one as an argument (failover ask "...") or pipe it on stdin'
            )
        text = piped
    else:
        text = argument if not piped or not piped.strip() else f"{argument}\n\n{piped}"
    if not text.strip():
        raise PromptError("the prompt is empty: give some text to ask")
    return text
