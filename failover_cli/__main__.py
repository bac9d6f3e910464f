"""Entry point for the ``failover`` command and ``python -m failover_cli``."""

from __future__ import annotations


def main() -> None:
    import sys

    if sys.argv[1:2] == ["ask"]:
        from .fast_ask import main as fast_ask

        if fast_ask(sys.argv[2:]):
            return
    from .cli import run

    run()


if __name__ == "__main__":
    main()
