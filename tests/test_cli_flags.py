"""The options of every command come from one table, and a short flag means one thing in the
whole command line (as the README's "Short flags" table documents)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import typer
from typer.main import get_command

from failover_cli.cli import options
from failover_cli.cli.commands import app
from failover_cli.sim.__main__ import build_parser

README = Path(__file__).resolve().parent.parent / "README.md"

SPECS = {
    "": options.TOP,
    "ask": options.ASK,
    "health": options.HEALTH,
    "status": options.STATUS,
    "bench": options.BENCH,
    "config validate": options.CONFIG_VALIDATE,
    "config show": options.CONFIG_SHOW,
    "config path": options.CONFIG_PATH,
    "config init": options.CONFIG_INIT,
    "demo": options.DEMO,
    "sim": options.SIM,
    "chat": options.CHAT,
    "logs": options.LOGS,
    "logs show": options.LOGS_SHOW,
}
TYPER_OWN = {"help", "install_completion", "show_completion"}  # added by Typer itself


def commands() -> Iterator[tuple[str, object, typer.Context]]:
    """Every command and group, with a context as Typer gives it (help option included)."""

    def walk(cmd, path: str, parent: typer.Context | None):
        ctx = typer.Context(cmd, info_name=path.rpartition(" ")[2] or "failover", parent=parent)
        yield path, cmd, ctx
        for name, sub in getattr(cmd, "commands", {}).items():
            yield from walk(sub, f"{path} {name}".strip(), ctx)

    yield from walk(get_command(app), "", None)


def short_flags() -> dict[str, dict[str, set[str]]]:
    """short flag -> long option -> the commands where the short flag means it."""
    found: dict[str, dict[str, set[str]]] = {}
    for path, cmd, ctx in commands():
        for param in cmd.get_params(ctx):  # type: ignore[attr-defined]
            if param.param_type_name != "option":
                continue
            flags = [*param.opts, *param.secondary_opts]
            longs = ",".join(sorted(f for f in flags if f.startswith("--")))
            for short in (f for f in flags if not f.startswith("--")):
                found.setdefault(short, {}).setdefault(longs, set()).add(path or "failover")
    for action in build_parser()._actions:  # `failover sim` reads its own options
        longs = ",".join(sorted(f for f in action.option_strings if f.startswith("--")))
        for short in (f for f in action.option_strings if not f.startswith("--")):
            found.setdefault(short, {}).setdefault(longs, set()).add("sim")
    return found


def test_no_short_flag_means_two_things_in_any_two_commands():
    clashes = {s: longs for s, longs in short_flags().items() if len(longs) > 1}
    assert not clashes


def test_c_is_continue_and_config_has_no_short_flag():
    flags = short_flags()
    assert set(flags["-c"]) == {"--continue"}
    assert not any("--config" in longs for by_long in flags.values() for longs in by_long)


def test_every_command_takes_exactly_the_options_of_its_table():
    built = {path: cmd for path, cmd, _ in commands()}
    for path, spec in SPECS.items():
        params = {p.name: p for p in built[path].params if p.name not in TYPER_OWN}  # type: ignore[attr-defined]
        assert set(params) == {p.param for p in spec}, path
        for p in spec:
            param = params[p.param]
            if isinstance(p, options.Arg):
                assert param.param_type_name == "argument", (path, p)
                continue
            assert param.opts == list(p.flags), (path, p)
            assert param.default == p.default and param.envvar == p.envvar, (path, p)
            assert param.help == p.help and param.metavar == p.metavar, (path, p)
            assert param.multiple == (p.kind == "list"), (path, p)
            assert param.is_flag == (p.kind == "flag"), (path, p)
            bounds = (getattr(param.type, "min", None), getattr(param.type, "max", None))
            assert bounds == (p.lo, p.hi), (path, p)


def test_every_declared_option_has_a_known_kind():
    for spec in SPECS.values():
        for p in spec:
            assert isinstance(p, options.Arg) or p.kind in options.KINDS, p


def test_the_readme_lists_every_short_flag():
    text = README.read_text(encoding="utf-8")
    section = text.split("### Short flags", 1)[1].split("\n#", 1)[0]
    rows = re.findall(r"^\| `(-\w)` \| `(--[\w-]+)[^`]*` \| ([^|]+) \|", section, re.MULTILINE)
    documented = {short: (long, where.strip()) for short, long, where in rows}
    actual = short_flags()
    assert set(documented) == set(actual)
    for short, by_long in actual.items():
        ((longs, where),) = by_long.items()
        assert documented[short][0] in longs.split(","), short
        if short != "-h":
            assert set(documented[short][1].split(", ")) == where, short
