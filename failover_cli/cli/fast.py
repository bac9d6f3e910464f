"""``failover ask`` without Typer, for the argument lists it can read with certainty.

Typer costs about 12 ms to import and build, a tenth of a one-shot ``ask``. :func:`parse`
reads ``ask``'s arguments from :data:`failover_cli.cli.options.ASK`, the table the Typer
command is built from; anything it is not sure of (help, an unknown or abbreviated option,
combined short flags, a value out of range, an unknown provider name) returns None and the
caller hands the whole command line to Typer, which reports errors as usual. So this never
produces an error of its own. Tests hold what it reads equal to what Typer passes.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

from .options import ASK, Opt, by_flag, defaults

_FLAGS = by_flag(ASK)


def _number(opt: Opt, text: str) -> int | float:
    """``text`` as ``opt``'s number; ValueError when Typer would refuse it."""
    value = int(text) if opt.kind == "int" else float(text)  # ValueError: not a number
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("not finite")
    if (opt.lo is not None and value < opt.lo) or (opt.hi is not None and value > opt.hi):
        raise ValueError("out of range")
    return value


def parse(args: Sequence[str], env: Mapping[str, str] | None = None) -> dict[str, Any] | None:
    """``ask``'s keyword arguments from ``args`` (what follows ``ask``), every parameter of
    :data:`~failover_cli.cli.options.ASK` included, or None when Typer should read them."""
    env = os.environ if env is None else env
    out: dict[str, Any] = {}
    positional: list[str] = []
    it = iter(args)
    for arg in it:
        if arg == "--":
            positional.extend(it)
            break
        if arg == "-" or not arg.startswith("-"):
            positional.append(arg)
            continue
        name, eq, attached = arg.partition("=") if arg.startswith("--") else (arg, "", "")
        opt = _FLAGS.get(name)
        if opt is None:
            return None  # help, an unknown option, -xVALUE or combined short flags
        if opt.kind == "flag":
            if eq:
                return None
            out[opt.param] = True
            continue
        value = attached if eq else next(it, None)
        if value is None:
            return None
        if opt.kind == "list":
            out.setdefault(opt.param, []).append(value)
        elif opt.kind == "str":
            out[opt.param] = value
        else:
            try:
                out[opt.param] = _number(opt, value)
            except ValueError:
                return None
    if len(positional) > 1:
        return None
    out["prompt"] = positional[0] if positional else None
    for opt in _FLAGS.values():
        if opt.envvar and opt.param not in out and env.get(opt.envvar):
            out[opt.param] = env[opt.envvar]
    return {**defaults(ASK), **out}


def skip_httpx_cli() -> None:
    """Keep ``import httpx`` from importing httpx's own command line (``httpx._main``), which
    brings in click, rich and pygments whenever click is installed (uvicorn and granian, the
    gateway's servers, install it): a large share of httpx's import time, paid by every
    one-shot ask. ``httpx.main`` still works: called, it imports the real module."""
    import sys

    if "httpx" in sys.modules or "httpx._main" in sys.modules:
        return
    import types

    def main(*args: Any, **kwargs: Any) -> Any:
        import importlib

        del sys.modules["httpx._main"]
        return importlib.import_module("httpx._main").main(*args, **kwargs)

    stub = types.ModuleType("httpx._main", "httpx's command line, imported when called")
    stub.main = main  # type: ignore[attr-defined]
    sys.modules["httpx._main"] = stub


def main(args: Sequence[str]) -> bool:
    """Run ``failover ask`` with ``args`` if :func:`parse` can read them (exits the process);
    False if Typer should run the command line instead."""
    kwargs = parse(args)
    if kwargs is None:
        return False
    skip_httpx_cli()
    from .ask import run_ask
    from .exits import BadOption, guarded

    try:
        guarded(lambda: run_ask(**kwargs))
    except BadOption:  # an unknown provider, a bad -m or --schema, found before stdin is read
        return False  # Typer says it, with its usual usage line
    return True
