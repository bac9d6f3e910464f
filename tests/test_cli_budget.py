"""`failover ask` and `failover status` under a budget, as real processes against the
loopback simulators: the refusal's exit code and one-line error, spend shared by processes
through the state file, and spend against budget in `status`."""

from __future__ import annotations

import json

from conftest import Sandbox, provider
from test_cli import no_traceback

from failover_cli.sim import Behavior

ANSWER = "The quick brown fox jumps over the lazy dog."
PRICE = {"input_per_mtok": 1000.0, "output_per_mtok": 1000.0}  # $0.001 a token


def posts(s) -> int:
    return len([r for r in s.requests if r.method == "POST"])


def test_ask_over_budget_exits_4_with_one_line_naming_the_limit(sandbox: Sandbox, sim) -> None:
    gpt = sim("openai", Behavior(text=ANSWER))
    sandbox.config(provider("gpt", gpt, cost=PRICE), budget={"daily_usd": 0.001})
    proc = sandbox.run("ask", "--max-tokens", "10", "Say the pangram")
    assert proc.returncode == 4, proc.stderr
    assert proc.stdout == ""
    errors = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert errors == [
        "failover: error: refused by the budget: gpt: skipped (daily budget $0.001: "
        "$0.00 spent, this request up to $0.014)"
    ]
    assert posts(gpt) == 0  # nothing was sent
    no_traceback(proc)


def test_json_error_carries_the_budget_exit_code(sandbox: Sandbox, sim) -> None:
    gpt = sim("openai", Behavior(text=ANSWER))
    sandbox.config(provider("gpt", gpt, cost=PRICE), budget={"monthly_usd": 0.001})
    proc = sandbox.run("ask", "--json", "--max-tokens", "10", "Say the pangram")
    assert proc.returncode == 4, proc.stderr
    error = json.loads(proc.stdout)["error"]
    assert error["type"] == "BudgetExceeded" and error["exit_code"] == 4
    assert "monthly budget" in error["message"]


def test_spend_is_shared_by_processes_and_shown_by_status(sandbox: Sandbox, sim) -> None:
    gpt = sim("openai", Behavior(text=ANSWER))
    llama = sim("ollama", Behavior(text="free answer"))
    free = {"input_per_mtok": 0, "output_per_mtok": 0}
    providers = (provider("gpt", gpt, cost=PRICE), provider("llama", llama, cost=free))
    sandbox.config(*providers, budget={"daily_usd": 10.0})
    first = sandbox.run("ask", "--json", "--max-tokens", "10", "Say the pangram")
    assert first.returncode == 0, first.stderr
    cost = json.loads(first.stdout)["cost_usd"]
    assert cost > 0

    status = sandbox.run("status", "--json")
    assert status.returncode == 0, status.stderr
    budget = json.loads(status.stdout)["budget"]
    assert budget["daily_usd"] == 10.0 and budget["monthly_usd"] is None
    assert budget["spent_today_usd"] == budget["spent_month_usd"] == round(cost, 6)
    assert budget["providers"]["gpt"]["spent_today_usd"] == round(cost, 6)
    assert budget["providers"]["llama"]["spent_today_usd"] == 0

    # A limit the first process's spend has reached: the next process goes to the free
    # provider, and says so with -v.
    sandbox.config(*providers, budget={"daily_usd": round(cost, 6)})
    second = sandbox.run("ask", "-v", "--max-tokens", "10", "Say the pangram")
    assert second.returncode == 0, second.stderr
    assert second.stdout == "free answer\n"
    assert "daily budget" in second.stderr
    assert posts(gpt) == 1

    table = sandbox.run("status", env={"COLUMNS": "80"})
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert any(line.startswith("whole chain") for line in lines)
    no_traceback(table)


def test_help_documents_the_budget_exit_code(sandbox: Sandbox) -> None:
    import re

    proc = sandbox.run("--help")
    assert proc.returncode == 0
    assert re.search(r"^\s+4\s+refused by the budget", proc.stdout, re.MULTILINE)


def test_a_budget_refusal_beside_a_keyless_provider_still_exits_4(sandbox: Sandbox, sim) -> None:
    """Key advice is for chains that failed for want of keys, not for budget refusals."""
    gpt = sim("openai", Behavior(text=ANSWER))
    claude = sim("anthropic", Behavior(text=ANSWER))
    sandbox.config(
        provider("claude", claude, cost=PRICE, api_key_env="NO_SUCH_KEY_SET"),
        provider("gpt", gpt, cost=PRICE),
        budget={"providers": {"gpt": {"daily_usd": 0.001}}},
    )
    proc = sandbox.run("ask", "--max-tokens", "10", "Say the pangram")
    assert proc.returncode == 4, proc.stderr
    assert "refused by the budget" in proc.stderr
    assert posts(gpt) == posts(claude) == 0
