"""``failover ask`` without Typer, for the argument lists it can read with certainty.

Typer costs about 12 ms to import and build, a tenth of a one-shot ``ask``. :func:`parse` reads
``ask``'s arguments from a table of its options; anything it is not sure of (help, an unknown
or abbreviated option, a value out of range, an unknown provider name) returns None and the
caller hands the whole command line to Typer, which reports errors as usual. So this never
produces an error of its own. A test holds the table equal to the Typer command's options and
the parsed values equal to what Typer passes.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from typing import Any

from .cli_base import MAX_SECONDS, MAX_TOKENS

# option -> (parameter, kind): kind "flag", "str", "list", or a converter with bounds.
_Convert = Callable[[str], Any]


def _number(cast: type, lo: float, hi: float) -> _Convert:
    def convert(text: str) -> Any:
        value = cast(text)  # ValueError: not a number
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError("not finite")
        if value < lo or value > hi:
            raise ValueError("out of range")
        return value

    return convert


OPTIONS: dict[str, tuple[str, str | _Convert]] = {
    "--system": ("system", "str"),
    "-s": ("system", "str"),
    "--attach": ("attach", "list"),
    "-a": ("attach", "list"),
    "--schema": ("schema", "str"),
    "--max-tokens": ("max_tokens", _number(int, 1, MAX_TOKENS)),
    "--temperature": ("temperature", _number(float, 0.0, 2.0)),
    "--provider": ("provider", "list"),
    "-p": ("provider", "list"),
    "--model": ("model", "list"),
    "-m": ("model", "list"),
    "--timeout": ("timeout", _number(float, 0.001, MAX_SECONDS)),
    "--wait": ("wait", _number(float, 0.0, MAX_SECONDS)),
    "--no-stream": ("no_stream", "flag"),
    "--json": ("json_out", "flag"),
    "--verbose": ("verbose", "flag"),
    "-v": ("verbose", "flag"),
    "--config": ("config", "str"),
    "-c": ("config", "str"),
    "--state": ("state", "str"),
}
ENVVARS = {"state": "FAILOVER_STATE"}


def parse(args: Sequence[str], env: dict[str, str] | None = None) -> dict[str, Any] | None:
    """``ask``'s keyword arguments from ``args`` (what follows ``ask``), or None when Typer
    should read them."""
    env = dict(os.environ) if env is None else env
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
        if name not in OPTIONS:
            return None  # help, an unknown option, -xVALUE or combined short flags
        param, kind = OPTIONS[name]
        if kind == "flag":
            if eq:
                return None
            out[param] = True
            continue
        value = attached if eq else next(it, None)
        if value is None:
            return None
        if kind == "list":
            out.setdefault(param, []).append(value)
        elif kind == "str":
            out[param] = value
        else:
            try:
                out[param] = kind(value)  # type: ignore[operator]
            except ValueError:
                return None
    if len(positional) > 1:
        return None
    out["prompt"] = positional[0] if positional else None
    for param, var in ENVVARS.items():
        if param not in out and env.get(var):
            out[param] = env[var]
    return out


def main(args: Sequence[str]) -> bool:
    """Run ``failover ask`` with ``args`` if :func:`parse` can read them (exits the process);
    False if Typer should run the command line instead."""
    kwargs = parse(args)
    if kwargs is None:
        return False
    from .cli_base import BadOption, guarded, run_ask

    prompt = kwargs.pop("prompt")
    try:
        guarded(lambda: run_ask(prompt, **kwargs))
    except BadOption:  # an unknown provider, a bad -m or --schema, found before stdin is read
        return False  # Typer says it, with its usual usage line
    return True
