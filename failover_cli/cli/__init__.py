"""The ``failover`` command line.

One package, one job per module:

- :mod:`.options` declares every option once (names, short flag, type, bounds, default,
  help, environment variable); both readers of the command line are built from it:
- :mod:`.fast` reads a plain ``failover ask`` without Typer (start-up time), and hands
  anything it is unsure of to :mod:`.commands`, the Typer app;
- :mod:`.exits` holds the exit codes and is the one place that maps failures to them;
- :mod:`.output` writes plain output (the answer, one-line messages, JSON, with secrets
  redacted) and :mod:`.render` draws everything styled with Rich;
- :mod:`.wiring` reaches the core (configuration, provider names, the state store);
- :mod:`.conversation` is the conversation a turn belongs to and its record in the history;
- the commands: :mod:`.ask` (with :mod:`.ask_input`), :mod:`.chat_loop`, :mod:`.logs`,
  :mod:`.health`, :mod:`.status`, :mod:`.bench`, :mod:`.config_cmd`, :mod:`.demo`,
  :mod:`.serve`.

Importing this package imports nothing else: the start-up of ``failover ask`` depends on it.
"""

from __future__ import annotations

from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> None:
    """Run ``failover`` with ``argv`` (default: the process's arguments); exits the process.
    A plain ``failover ask`` runs without importing Typer."""
    import sys

    args = sys.argv[1:] if argv is None else list(argv)
    if args[:1] == ["ask"]:
        from .fast import main as fast_ask

        if fast_ask(args[1:]):
            return
    from .commands import run

    run(argv)
