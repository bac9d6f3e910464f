"""The Typer-free reading of ``failover ask``'s arguments: its table matches the Typer command,
whatever it accepts it reads exactly as Typer does, and whatever it is unsure of goes to Typer."""

from __future__ import annotations

import inspect

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from failover_cli.cli import ask, fast, options
from failover_cli.cli.commands import app
from failover_cli.cli.exits import UnknownProvider, guarded

ASK = get_command(app).commands["ask"]  # type: ignore[attr-defined]


def test_the_typer_command_is_built_from_the_table_the_fast_path_reads():
    typer_options = {
        opt: p.name
        for p in ASK.params
        if p.param_type_name == "option"
        for opt in p.opts
        if opt not in ("-h", "--help")
    }
    table = options.by_flag(options.ASK)
    assert {flag: o.param for flag, o in table.items()} == typer_options
    for p in ASK.params:
        if p.param_type_name != "option" or p.name is None:
            continue
        (opt,) = {o for o in table.values() if o.param == p.name}
        assert (opt.kind == "flag") == p.is_flag, p.name
        assert (opt.kind == "list") == p.multiple, p.name
        assert opt.envvar == p.envvar, p.name
        assert opt.default == p.default, p.name


def test_run_ask_takes_every_parameter_with_the_tables_defaults():
    params = inspect.signature(ask.run_ask).parameters.values()
    assert {p.name: p.default for p in params} == options.defaults(options.ASK)


def typer_reading(monkeypatch, args: list[str], env: dict[str, str]) -> dict | None:
    """The keyword arguments Typer's ``ask`` passes to run_ask, or None if Typer rejects."""
    seen: list[dict] = []

    def capture(**kwargs):
        seen.append(kwargs)

    monkeypatch.setattr(ask, "run_ask", capture)
    result = CliRunner().invoke(app, ["ask", *args], env=env, prog_name="failover")
    if result.exit_code != 0:
        return None
    (kwargs,) = seen
    return {k: list(v) if isinstance(v, tuple) else v for k, v in kwargs.items()}


HANDLED = [
    ["hello"],
    [],
    ["-"],
    ["hi", "--max-tokens", "64", "--config", "p.yaml", "--state", "s.json", "--no-stream"],
    ["-c", "q"],
    ["--continue", "--cid", "01JX", "q"],
    ["--cid=01JX", "-c", "-c", "q"],
    ["--json", "-v", "--system", "be brief", "q"],
    ["-s", "", "--temperature", "0", "q", "--wait", "0"],
    ["--temperature=2", "--timeout=0.5", "--max-tokens=1", "q"],
    ["-p", "gpt", "--provider", "claude", "-p", "gpt", "q"],
    ["--max-tokens", "5", "--max-tokens", "6", "q"],
    [
        "--",
        "--json",
    ],
    ["q", "--verbose", "--verbose"],
    ["--config", "-", "q"],
    ["--system", "-v", "q"],  # an option's value may look like an option
    ["--max-tokens", "1000000", "--timeout", "86400", "--wait", "86400", "q"],  # the bounds
]
UNSURE = [
    ["-h"],
    ["q", "--help"],
    ["--max-tok", "5", "q"],
    ["--max-tokens", "0", "q"],
    ["--max-tokens", "1.5", "q"],
    ["--temperature", "2.5", "q"],
    ["--temperature", "nan", "q"],
    ["--timeout", "0", "q"],
    ["--wait", "-1", "q"],
    ["--timeout", "inf", "q"],
    ["--timeout", "nan", "q"],
    ["--timeout", "86400.5", "q"],
    ["--wait", "inf", "q"],
    ["--wait", "nan", "q"],
    ["--max-tokens", "1000001", "q"],
    ["--max-tokens", "1" + "0" * 30, "q"],
    ["--no-stream=yes", "q"],
    ["--continue=yes", "q"],
    ["-cv", "q"],
    ["-c=p.yaml", "q"],
    ["q", "--cid"],
    ["-c", "p.yaml", "q"],  # -c was --config: now a flag, so this is two prompts
    ["-vp", "gpt", "q"],
    ["-sbrief", "q"],
    ["one", "two"],
    ["q", "--system"],
    ["--bogus", "q"],
]


@pytest.mark.parametrize("args", HANDLED, ids=" ".join)
def test_what_it_reads_it_reads_as_typer_does(monkeypatch, args):
    env = {"FAILOVER_STATE": ""}
    ours = fast.parse(args, env)
    assert ours is not None
    assert ours == typer_reading(monkeypatch, args, env)


@pytest.mark.parametrize("args", UNSURE, ids=" ".join)
def test_anything_unusual_goes_to_typer(args):
    assert fast.parse(args, {}) is None


NUMBERS = [a for a in UNSURE if {"--max-tokens", "--temperature", "--timeout", "--wait"} & set(a)]


@pytest.mark.parametrize("args", NUMBERS, ids=" ".join)
def test_numbers_it_leaves_to_typer_are_usage_errors_there(monkeypatch, args):
    assert typer_reading(monkeypatch, args, {}) is None


def test_the_old_short_config_flag_is_a_usage_error_not_a_config(monkeypatch):
    assert typer_reading(monkeypatch, ["-c", "p.yaml", "q"], {}) is None


def test_the_state_option_falls_back_to_its_environment_variable(monkeypatch):
    env = {"FAILOVER_STATE": "/tmp/elsewhere.json"}
    assert fast.parse(["q"], env)["state"] == "/tmp/elsewhere.json"
    assert fast.parse(["q", "--state", "x"], env)["state"] == "x"
    assert typer_reading(monkeypatch, ["q"], env)["state"] == "/tmp/elsewhere.json"


def test_an_unknown_provider_is_left_to_typer_to_report():
    def raises():
        raise UnknownProvider("no provider named 'x'", "--provider")

    with pytest.raises(UnknownProvider):
        guarded(raises)  # not swallowed as an internal error


def test_a_bug_still_becomes_one_line_and_exit_1(capsys, monkeypatch):
    monkeypatch.delenv("FAILOVER_DEBUG", raising=False)

    def boom():
        raise RuntimeError("oops")

    with pytest.raises(SystemExit) as info:
        guarded(boom)
    assert info.value.code == 1
    assert "internal error: RuntimeError: oops" in capsys.readouterr().err
