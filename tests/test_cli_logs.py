"""``failover ask`` records what it answered, and ``failover logs`` reads it back: the real
executable against loopback simulators, in a sandbox with its own data directory."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
from pathlib import Path
from typing import Any

import pytest
from conftest import SIM_KEY, Sandbox, provider

from failover_cli.sim import Behavior

ANSWER = "Breakers open after repeated failures."
DOWN = Behavior(failure_rate=1.0, failure_status=503)


def db_path(sandbox: Sandbox) -> Path:
    return Path(sandbox.env["XDG_DATA_HOME"]) / "failover" / "history.db"


def logs_json(sandbox: Sandbox, *args: str) -> list[dict[str, Any]]:
    proc = sandbox.run("logs", "--json", *args)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert isinstance(out, list)
    return out


def one_warning(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("failover: warning: history not written")
    assert "Traceback" not in stderr
    return lines[0]


@pytest.fixture
def chain(sandbox: Sandbox, sim) -> Sandbox:
    """claude always down (503), gpt answering ANSWER."""
    claude = sim("anthropic", DOWN)
    gpt = sim("openai", Behavior(text=ANSWER))
    sandbox.config(provider("claude", claude), provider("gpt", gpt))
    return sandbox


def test_an_ask_is_recorded_with_its_attempts_and_segments(chain: Sandbox) -> None:
    proc = chain.run("ask", "-s", "Be terse.", "What do breakers do?")
    assert proc.returncode == 0 and proc.stdout == ANSWER + "\n", proc.stderr
    (e,) = logs_json(chain)
    assert (e["prompt"], e["system"], e["answer"]) == ("What do breakers do?", "Be terse.", ANSWER)
    assert (e["provider"], e["model"], e["chain"]) == ("gpt", "gpt-model", "default")
    assert e["config"] == chain.env["FAILOVER_CONFIG"]
    outcomes = [(a["provider"], a["outcome"], a["class"], a["status"]) for a in e["attempts"]]
    assert ("claude", "failed", "transient", 503) in outcomes
    assert outcomes[-1] == ("gpt", "ok", None, None)
    assert all(a["duration_ms"] >= 0 for a in e["attempts"])
    assert e["segments"] == [{"provider": "gpt", "model": "gpt-model", "chars": len(ANSWER)}]
    assert e["input_tokens"] > 0 and e["output_tokens"] > 0 and e["latency_ms"] > 0
    assert len(e["cid"]) == 16
    files = [p for p in db_path(chain).parent.iterdir() if p.name.startswith("history.db")]
    assert all(b"sim-test-key" not in p.read_bytes() for p in files)  # never a key


def test_logs_lists_searches_and_filters(chain: Sandbox, sim) -> None:
    for prompt in ("circuit breakers please", "retry budgets", "half-open probes"):
        assert chain.run("ask", prompt).returncode == 0
    listed = chain.run("logs", env={"COLUMNS": "80"})
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].split()[:3] == ["id", "when", "provider"]
    assert [line.split()[0] for line in lines[1:]] == ["3", "2", "1"]
    assert "half-open probes" in lines[1] and "gpt" in lines[1]
    assert max(len(line) for line in lines) <= 80
    assert [e["prompt"] for e in logs_json(chain, "-n", "2")] == [
        "half-open probes",
        "retry budgets",
    ]
    assert [e["prompt"] for e in logs_json(chain, "-q", "circuit")] == ["circuit breakers please"]
    assert logs_json(chain, "-q", "circuit budgets") == []
    assert len(logs_json(chain, "-q", "breakers")) == 3  # the answers say it
    assert len(logs_json(chain, "--provider", "gpt")) == 3
    assert logs_json(chain, "-p", "claude") == []  # it failed: it wrote nothing
    assert len(logs_json(chain, "--since", "1h")) == 3
    assert logs_json(chain, "--since", "2999-01-01") == []
    bad = chain.run("logs", "--since", "last tuesday")
    assert bad.returncode == 2 and len(bad.stderr.splitlines()) == 1


def test_logs_show_prints_one_entry_whole(chain: Sandbox) -> None:
    assert chain.run("ask", "-s", "Be terse.", "What do breakers do?").returncode == 0
    proc = chain.run("logs", "show", "1")
    assert proc.returncode == 0, proc.stderr
    assert "conversation" in proc.stdout and "provider: gpt (gpt-model)" in proc.stdout
    assert "attempt: claude failed transient 503" in proc.stdout
    assert proc.stdout.endswith(f"prompt:\nWhat do breakers do?\n\nanswer:\n{ANSWER}\n")
    shown = json.loads(chain.run("logs", "show", "1", "--json").stdout)
    assert shown["answer"] == ANSWER and shown["id"] == 1
    missing = chain.run("logs", "show", "99")
    assert missing.returncode == 1 and missing.stderr.count("\n") == 1, missing.stderr
    assert "no entry 99" in missing.stderr
    assert chain.run("logs", "show", "abc").returncode == 2


def test_an_empty_history_lists_nothing(chain: Sandbox) -> None:
    assert logs_json(chain) == []
    proc = chain.run("logs")
    assert proc.returncode == 0 and proc.stdout == ""
    assert not db_path(chain).exists()  # reading creates nothing


@pytest.mark.parametrize("how", ["--no-log", "FAILOVER_LOG=0", "log: false"])
def test_recording_can_be_turned_off(sandbox: Sandbox, sim, how: str) -> None:
    gpt = sim("openai", Behavior(text=ANSWER))
    sandbox.config(provider("gpt", gpt), **({"log": False} if how == "log: false" else {}))
    args = ["ask", "--no-log", "hi"] if how == "--no-log" else ["ask", "hi"]
    env = {"FAILOVER_LOG": "0"} if how == "FAILOVER_LOG=0" else {}
    proc = sandbox.run(*args, env=env)
    assert proc.returncode == 0 and proc.stdout == ANSWER + "\n" and proc.stderr == ""
    assert not db_path(sandbox).exists()


def test_the_database_is_private_wal_and_pruned_to_its_bound(sandbox: Sandbox, sim) -> None:
    gpt = sim("openai", Behavior(text=ANSWER))
    path = sandbox.root / "private" / "h.db"
    sandbox.config(provider("gpt", gpt), log={"path": str(path), "max_entries": 2})
    for prompt in ("one", "two", "three"):
        assert sandbox.run("ask", prompt).returncode == 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()
    assert [e["prompt"] for e in logs_json(sandbox)] == ["three", "two"]


def test_a_locked_database_costs_one_warning_not_the_answer(chain: Sandbox) -> None:
    assert chain.run("ask", "first").returncode == 0
    holder = sqlite3.connect(db_path(chain), isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        proc = chain.run("ask", "second")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert proc.returncode == 0 and proc.stdout == ANSWER + "\n"
    assert "locked" in one_warning(proc.stderr)
    assert [e["prompt"] for e in logs_json(chain)] == ["first"]


def test_an_unwritable_path_costs_one_warning_not_the_answer(sandbox: Sandbox, sim) -> None:
    gpt = sim("openai", Behavior(text=ANSWER))
    blocker = sandbox.root / "a-file"
    blocker.write_text("not a directory")
    sandbox.config(provider("gpt", gpt), log={"path": str(blocker / "history.db")})
    proc = sandbox.run("ask", "hi")
    assert proc.returncode == 0 and proc.stdout == ANSWER + "\n"
    one_warning(proc.stderr)


def test_a_symbolic_link_at_the_database_path_is_refused(sandbox: Sandbox, sim) -> None:
    gpt = sim("openai", Behavior(text=ANSWER))
    victim = sandbox.root / "victim"
    victim.write_bytes(b"precious")
    path = db_path(sandbox)
    path.parent.mkdir(parents=True)
    os.symlink(victim, path)
    sandbox.config(provider("gpt", gpt))
    proc = sandbox.run("ask", "hi")
    assert proc.returncode == 0 and proc.stdout == ANSWER + "\n"
    assert "symbolic link" in one_warning(proc.stderr)
    assert victim.read_bytes() == b"precious" and path.is_symlink()
    shown = sandbox.run("logs")
    assert shown.returncode == 1 and "symbolic link" in shown.stderr
    assert shown.stderr.count("\n") == 1 and "Traceback" not in shown.stderr


def test_a_failed_ask_keeps_its_prompt_and_is_never_sent_as_a_turn(sandbox: Sandbox, sim) -> None:
    """Nothing typed is lost when every provider fails: the prompt and why it failed are in
    the history, and a continued conversation does not send the unanswered turn."""
    claude = sim("anthropic", DOWN)
    sandbox.config(provider("claude", claude))
    proc = sandbox.run("ask", "--wait", "0", "A question worth keeping")
    assert proc.returncode == 1, proc.stderr
    (e,) = logs_json(sandbox)
    assert (e["prompt"], e["answer"], e["provider"]) == ("A question worth keeping", "", "")
    assert "no provider could answer" in e["error"]
    assert (e["attempts"][0]["provider"], e["attempts"][0]["status"]) == ("claude", 503)
    assert "failed" in sandbox.run("logs", env={"COLUMNS": "100"}).stdout
    shown = sandbox.run("logs", "show", str(e["id"]))
    assert "not answered: no provider could answer" in shown.stdout, shown.stderr

    gpt = sim("openai", Behavior(text=ANSWER))
    sandbox.config(provider("gpt", gpt))
    again = sandbox.run("ask", "-c", "Second try")
    assert again.returncode == 2, again.stderr  # nothing answered to continue
    first = sandbox.run("ask", "First answered")
    assert first.returncode == 0, first.stderr
    assert [e["answer"] for e in logs_json(sandbox)] == [ANSWER, ""]


def test_a_key_pasted_into_a_prompt_is_redacted_before_it_is_stored(chain: Sandbox) -> None:
    proc = chain.run("ask", "-s", f"my key is {SIM_KEY}", f"Is {SIM_KEY} leaked?")
    assert proc.returncode == 0, proc.stderr
    (e,) = logs_json(chain)
    assert e["prompt"] == "Is [REDACTED] leaked?" and e["system"] == "my key is [REDACTED]"
    files = [p for p in db_path(chain).parent.iterdir() if p.name.startswith("history.db")]
    assert all(SIM_KEY.encode() not in p.read_bytes() for p in files)
