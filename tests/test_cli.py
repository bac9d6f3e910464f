"""The real ``failover`` executable in subprocesses, against loopback simulators."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time

import jsonschema
import pytest
from conftest import FAILOVER, SIM_KEY_ENV, Sandbox, provider

from failover_cli.sim import Behavior, refused_url
from failover_cli.starter import STARTER_YAML

ANSWER = "The quick brown fox jumps over the lazy dog."
FAILING = Behavior(failure_rate=1.0, failure_status=500)

ATTEMPT_SCHEMA = {
    "type": "object",
    "required": ["provider", "outcome", "class", "status", "message", "duration_ms"],
    "properties": {
        "provider": {"type": "string"},
        "outcome": {"enum": ["ok", "failed", "skipped"]},
        "class": {"enum": [None, "transient", "provider", "request", "context_length"]},
        "status": {"type": ["integer", "null"]},
        "message": {"type": "string"},
        "duration_ms": {"type": "number", "minimum": 0},
    },
}
ASK_SCHEMA = {
    "type": "object",
    "required": [
        "text", "provider", "model", "usage", "cost_usd", "latency_ms", "ttft_ms", "attempts",
    ],
    "properties": {
        "text": {"type": "string"},
        "provider": {"type": "string"},
        "model": {"type": "string"},
        "usage": {
            "type": "object",
            "required": ["input_tokens", "output_tokens"],
            "properties": {
                "input_tokens": {"type": "integer"},
                "output_tokens": {"type": "integer"},
            },
        },
        "cost_usd": {"type": ["number", "null"]},
        "latency_ms": {"type": "number", "minimum": 0},
        "ttft_ms": {"type": ["number", "null"]},
        "attempts": {"type": "array", "items": ATTEMPT_SCHEMA},
    },
}  # fmt: skip
MS = {"type": ["number", "null"]}
STATUS_SCHEMA = {
    "type": "object",
    "required": ["providers"],
    "properties": {
        "providers": {
            "type": "array",
            "items": {
                "type": "object",
                "required": [
                    "name", "kind", "model", "state", "cooldown_remaining_s",
                    "consecutive_failures", "requests", "successes", "failures",
                    "success_rate", "latency_ms", "ttft_ms", "score", "last_error",
                ],
                "properties": {
                    "name": {"type": "string"},
                    "kind": {"enum": ["anthropic", "openai", "ollama", "gemini"]},
                    "state": {"enum": ["closed", "open", "half_open"]},
                    "cooldown_remaining_s": MS,
                    "consecutive_failures": {"type": "integer", "minimum": 0},
                    "requests": {"type": "integer", "minimum": 0},
                    "successes": {"type": "integer", "minimum": 0},
                    "failures": {"type": "integer", "minimum": 0},
                    "success_rate": MS,
                    "latency_ms": {
                        "type": "object", "required": ["p50", "p95", "p99"],
                        "properties": {"p50": MS, "p95": MS, "p99": MS},
                    },
                    "ttft_ms": {"type": "object", "required": ["p50"], "properties": {"p50": MS}},
                    "score": {"type": "number", "minimum": 0, "maximum": 1},
                    "last_error": {"type": ["object", "null"]},
                },
            },
        }
    },
}  # fmt: skip


def no_traceback(proc: subprocess.CompletedProcess[str]) -> None:
    for text in (proc.stdout, proc.stderr):
        assert "Traceback" not in text
        assert "Exception ignored" not in text


def last_prompt(s) -> str:
    """The user message of the last completion request a simulator received."""
    body = [r for r in s.requests if r.method == "POST"][-1].json
    return body["messages"][-1]["content"]


# --- ask ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("flags", [["-c"], ["--cid", "01JX"]])
def test_continuing_a_conversation_that_does_not_exist_is_refused(
    sandbox: Sandbox, sim, flags
) -> None:
    """Not a question asked silently without the conversation it continues."""
    gpt = sim("openai", Behavior(text=ANSWER))
    sandbox.config(provider("gpt", gpt))
    proc = sandbox.run("ask", *flags, "and then?")
    assert proc.returncode == 2, proc.stderr
    assert "no conversation" in proc.stderr
    assert [r for r in gpt.requests if r.method == "POST"] == []
    no_traceback(proc)


def test_ask_streams_only_the_answer_to_stdout(sandbox: Sandbox, sim) -> None:
    gpt = sim("openai", Behavior(text=ANSWER))
    sandbox.config(provider("gpt", gpt))
    proc = sandbox.run("ask", "Say the pangram")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ANSWER + "\n"
    assert proc.stderr == ""
    assert last_prompt(gpt) == "Say the pangram"
    assert [r.json.get("stream") for r in gpt.requests] == [True]


def test_ask_no_stream_sends_a_plain_completion(sandbox: Sandbox, sim) -> None:
    gpt = sim("openai", Behavior(text=ANSWER))
    sandbox.config(provider("gpt", gpt))
    proc = sandbox.run("ask", "--no-stream", "hi")
    assert (proc.returncode, proc.stdout) == (0, ANSWER + "\n")
    assert not gpt.requests[-1].json.get("stream")


def test_ask_fails_over_with_the_route_trace_on_stderr(sandbox: Sandbox, sim) -> None:
    claude = sim("anthropic", FAILING)
    gpt = sim("openai", Behavior(text=ANSWER))
    sandbox.config(provider("claude", claude), provider("gpt", gpt))
    proc = sandbox.run("ask", "-v", "hello")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ANSWER + "\n"
    lines = proc.stderr.splitlines()
    fails = [ln for ln in lines if ln.split()[:2] == ["FAIL", "claude"]]
    assert len(fails) == 2 and all("transient 500" in ln for ln in fails)
    assert "retry in" in fails[0] and "next provider" in fails[1]
    assert any(ln.split()[:2] == ["OK", "gpt"] for ln in lines)
    assert claude.count == 2 and gpt.count == 1


BROKEN = Behavior(text="one two three four five six", fault="midstream_error", fault_after_tokens=2)


def test_a_mid_stream_switch_is_traced_noted_and_in_json(sandbox: Sandbox, sim) -> None:
    claude = sim("anthropic", BROKEN)
    gpt = sim("openai", Behavior(text=ANSWER))
    sandbox.config(provider("claude", claude), provider("gpt", gpt))
    traced = sandbox.run("ask", "-v", "hello")
    assert traced.returncode == 0, traced.stderr
    switch = [ln for ln in traced.stderr.splitlines() if ln.split()[:1] == ["SWITCH"]]
    assert len(switch) == 1, traced.stderr
    assert "claude broke off mid-answer -> gpt continues after" in switch[0]
    assert "(instruct)" in switch[0]
    plain = sandbox.run("ask", "hello")  # no -v, stderr not a terminal: one note
    assert plain.returncode == 0
    assert plain.stderr.splitlines() == [
        "failover: note: claude broke off mid-answer; switched to gpt, which continues it "
        "(instruct)"
    ]
    data = json.loads(sandbox.run("ask", "--json", "hello").stdout)
    (seam,) = data["switches"]
    assert (seam["from"], seam["to"], seam["strategy"]) == ("claude", "gpt", "instruct")
    assert seam["kept_chars"] > 0
    assert [s["provider"] for s in data["segments"]] == ["claude", "gpt"]


def test_a_restarted_answer_says_so(sandbox: Sandbox, sim) -> None:
    claude = sim("anthropic", BROKEN)
    gpt = sim("openai", Behavior(text=ANSWER))
    sandbox.config(provider("claude", claude), provider("gpt", gpt, continuation="restart"))
    proc = sandbox.run("ask", "hello")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines() == [
        "failover: note: claude broke off mid-answer; switched to gpt: the answer restarts "
        "from the beginning"
    ]
    traced = sandbox.run("ask", "-v", "hello")
    assert "gpt restarts the answer from the beginning" in traced.stderr
    data = json.loads(sandbox.run("ask", "--json", "hello").stdout)
    assert [(s["strategy"], s["kept_chars"]) for s in data["switches"]] == [("restart", 0)]


def test_parameter_adjustments_show_in_the_trace_and_json(sandbox: Sandbox, sim) -> None:
    claude = sim("anthropic", Behavior(text=ANSWER))
    sandbox.config(provider("claude", claude))
    proc = sandbox.run("ask", "-v", "--temperature", "1.5", "hello")
    assert proc.returncode == 0, proc.stderr
    (line,) = [ln for ln in proc.stderr.splitlines() if ln.split()[:1] == ["ADJUST"]]
    assert "claude temperature clamped" in line and "sent 1" in line
    assert claude.requests[-1].json["temperature"] == 1
    data = json.loads(sandbox.run("ask", "--json", "--temperature", "1.5", "hi").stdout)
    assert [(a["provider"], a["parameter"], a["action"]) for a in data["adjustments"]] == [
        ("claude", "temperature", "clamped")
    ]


def test_ask_exit_1_when_no_provider_answers(sandbox: Sandbox, sim) -> None:
    claude = sim("anthropic", FAILING)
    sandbox.config(provider("claude", claude), provider("down", refused_url(), kind="openai"))
    proc = sandbox.run("ask", "hello")
    assert proc.returncode == 1
    assert proc.stdout == ""
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("failover: error:")]
    assert len(errors) == 1 and "claude" in errors[0] and "down" in errors[0]
    no_traceback(proc)


def test_ask_exit_3_when_the_request_is_rejected_and_not_failed_over(sandbox: Sandbox, sim) -> None:
    claude = sim("anthropic", Behavior(statuses=[400]))
    gpt = sim("openai")
    sandbox.config(provider("claude", claude), provider("gpt", gpt))
    proc = sandbox.run("ask", "hello")
    assert proc.returncode == 3
    assert proc.stdout == ""
    assert "rejected by claude" in proc.stderr
    assert gpt.count == 0
    no_traceback(proc)


def test_ask_appends_piped_stdin_to_the_argument(sandbox: Sandbox, sim) -> None:
    gpt = sim("openai", Behavior(text=ANSWER))
    sandbox.config(provider("gpt", gpt))
    diff = b"--- a/x.py\n+++ b/x.py\n+print('\xc3\xa9')\n"
    proc = sandbox.run("ask", "review this", input=diff)
    assert proc.returncode == 0, proc.stderr
    assert last_prompt(gpt) == "review this\n\n" + diff.decode()


def test_ask_sends_a_large_piped_diff_whole(sandbox: Sandbox, sim) -> None:
    gpt = sim("openai", Behavior(text=ANSWER))
    sandbox.config(provider("gpt", gpt))
    diff = b"".join(b"+line %d of a long diff\n" % i for i in range(20_000))  # ~500 KB
    proc = sandbox.run("ask", "review this", input=diff)
    assert (proc.returncode, proc.stdout) == (0, ANSWER + "\n"), proc.stderr
    assert last_prompt(gpt) == "review this\n\n" + diff.decode()


def test_ask_dash_and_no_argument_read_stdin_alone(sandbox: Sandbox, sim) -> None:
    gpt = sim("openai", Behavior(text=ANSWER))
    sandbox.config(provider("gpt", gpt))
    assert sandbox.run("ask", "-", input=b"from stdin\n").returncode == 0
    assert last_prompt(gpt) == "from stdin\n"
    assert sandbox.run("ask", input=b"bare stdin").returncode == 0
    assert last_prompt(gpt) == "bare stdin"


@pytest.mark.parametrize(
    ("args", "stdin", "expected"),
    [
        (["   "], None, "the prompt is empty"),
        ([], None, "no prompt"),
        (["-"], b" \n\t", "the prompt is empty"),
        (["explain"], b"caf\xe9 au lait", "not valid UTF-8"),
    ],
)
def test_ask_bad_prompt_is_a_usage_error(sandbox: Sandbox, sim, args, stdin, expected) -> None:
    gpt = sim("openai")
    sandbox.config(provider("gpt", gpt))
    proc = sandbox.run("ask", *args, input=stdin)
    assert proc.returncode == 2
    assert expected in proc.stderr
    assert proc.stdout == "" and gpt.count == 0
    no_traceback(proc)


def test_ask_unknown_provider_is_a_usage_error(sandbox: Sandbox, sim) -> None:
    sandbox.config(provider("claude", sim("anthropic")))
    proc = sandbox.run("ask", "-p", "claud", "hi")
    assert proc.returncode == 2
    assert "did you mean 'claude'" in proc.stderr


def test_ask_provider_option_uses_only_that_provider(sandbox: Sandbox, sim) -> None:
    claude = sim("anthropic")
    gpt = sim("openai", Behavior(text=ANSWER))
    sandbox.config(provider("claude", claude), provider("gpt", gpt))
    proc = sandbox.run("ask", "-p", "gpt", "hi")
    assert (proc.returncode, proc.stdout) == (0, ANSWER + "\n")
    assert claude.count == 0


def test_ask_json_prints_one_object_with_the_documented_fields(sandbox: Sandbox, sim) -> None:
    claude = sim("anthropic", FAILING)
    gpt = sim("openai", Behavior(text=ANSWER))
    sandbox.config(
        provider("claude", claude),
        provider("gpt", gpt, cost={"input_per_mtok": 1.0, "output_per_mtok": 2.0}),
    )
    proc = sandbox.run("ask", "--json", "hi")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    jsonschema.validate(out, ASK_SCHEMA)
    assert (out["text"], out["provider"], out["model"]) == (ANSWER, "gpt", "gpt-model")
    assert out["ttft_ms"] is not None and out["usage"]["output_tokens"] > 0
    usage = out["usage"]
    assert out["cost_usd"] == pytest.approx(
        (usage["input_tokens"] * 1.0 + usage["output_tokens"] * 2.0) / 1e6
    )
    outcomes = [(a["provider"], a["outcome"], a["class"], a["status"]) for a in out["attempts"]]
    assert outcomes == [
        ("claude", "failed", "transient", 500),
        ("claude", "failed", "transient", 500),
        ("gpt", "ok", None, None),
    ]


def test_ask_json_failure_prints_an_error_object(sandbox: Sandbox, sim) -> None:
    sandbox.config(provider("claude", sim("anthropic", FAILING)))
    proc = sandbox.run("ask", "--json", "hi")
    assert proc.returncode == 1
    out = json.loads(proc.stdout)
    assert out["error"]["type"] == "AllProvidersFailed" and out["error"]["exit_code"] == 1
    for attempt in out["attempts"]:
        jsonschema.validate(attempt, ATTEMPT_SCHEMA)
    assert [a["status"] for a in out["attempts"]] == [500, 500]


def test_bad_config_names_file_and_line_and_exits_2(sandbox: Sandbox) -> None:
    path = sandbox.root / "providers.yaml"
    path.write_text(
        "providers:\n  - name: gpt\n    kind: openai\n    model: m\n    timeout: fast\n"
        "retry: {attempts: 2, base_delya: 1}\n",
        encoding="utf-8",
    )
    sandbox.env["FAILOVER_CONFIG"] = str(path)
    proc = sandbox.run("ask", "hi")
    assert proc.returncode == 2
    assert f'{path}:5: providers[0].timeout: expected a number, got "fast"' in proc.stderr
    assert f"{path}:6: retry.base_delya: unknown key (did you mean 'base_delay'?)" in proc.stderr
    assert proc.stdout == ""
    no_traceback(proc)
    missing = sandbox.run("ask", "--config", str(sandbox.root / "nope.yaml"), "hi")
    assert missing.returncode == 2 and "nope.yaml: no such file" in missing.stderr


def test_corrupt_state_file_warns_once_and_still_answers(sandbox: Sandbox, sim) -> None:
    sandbox.config(provider("gpt", sim("openai", Behavior(text=ANSWER))))
    sandbox.state_path.parent.mkdir(parents=True)
    sandbox.state_path.write_bytes(b"{not json at all\x00")
    proc = sandbox.run("ask", "hi")
    assert proc.returncode == 0
    assert proc.stdout == ANSWER + "\n"
    warnings = [ln for ln in proc.stderr.splitlines() if "warning" in ln]
    assert len(warnings) == 1, proc.stderr
    no_traceback(proc)
    status = json.loads(sandbox.run("status", "--json").stdout)
    assert status["providers"][0]["successes"] == 1  # a fresh state was written


def test_unwritable_state_location_warns_and_still_answers(sandbox: Sandbox, sim) -> None:
    sandbox.config(provider("gpt", sim("openai", Behavior(text=ANSWER))))
    blocker = sandbox.root / "file"
    blocker.write_text("x")
    proc = sandbox.run("ask", "--state", str(blocker / "state.json"), "hi")
    assert (proc.returncode, proc.stdout) == (0, ANSWER + "\n")
    assert len([ln for ln in proc.stderr.splitlines() if "warning" in ln]) == 1
    no_traceback(proc)


def test_api_keys_never_appear_in_any_output(sandbox: Sandbox, sim) -> None:
    canary = "sk-canary-7f3a9d2e1b5c"
    good = sim("anthropic", Behavior(text=ANSWER), api_key=canary)
    wrong = sim("openai", Behavior(text=ANSWER), api_key="another-key")
    sandbox.env[SIM_KEY_ENV] = canary
    sandbox.config(provider("wrong", wrong), provider("good", good))
    runs = [
        sandbox.run("ask", "-v", "-p", "wrong", "hi"),  # 401: opens wrong's breaker for long
        sandbox.run("ask", "-v", "--json", "hi"),
        sandbox.run("health"),
        sandbox.run("status", "--json"),
        sandbox.run("config", "show", "--json"),
    ]
    assert [r.returncode for r in runs[:3]] == [1, 0, 1]
    assert "FAIL  wrong provider 401" in runs[0].stderr  # reported, without the key
    assert json.loads(runs[1].stdout)["provider"] == "good"
    for r in runs:
        assert canary not in r.stdout and canary not in r.stderr
    assert canary not in sandbox.state_path.read_text()


def test_broken_pipe_on_stdout_exits_quietly(sandbox: Sandbox, sim) -> None:
    words = " ".join(f"word{i}" for i in range(200))
    sandbox.config(provider("gpt", sim("openai", Behavior(text=words, tokens_per_second=400))))
    proc = subprocess.Popen(
        [*FAILOVER, "ask", "go"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=sandbox.env,
    )
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.read(1) == b"w"  # like `| head -c1`
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=30) == 141
    assert "Traceback" not in err and "Exception ignored" not in err


def test_ctrl_c_exits_130_and_saves_state(sandbox: Sandbox, sim) -> None:
    claude = sim("anthropic", FAILING)
    gpt = sim("openai", Behavior(fault="hang"))
    sandbox.config(provider("claude", claude), provider("gpt", gpt))
    proc = subprocess.Popen(
        [*FAILOVER, "ask", "hi"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=sandbox.env,
    )
    deadline = time.monotonic() + 20
    while gpt.count == 0 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.01)  # waiting for a condition, not proving timing
    assert gpt.count == 1
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 130
    assert out == b""
    assert "interrupted" in err.decode() and "Traceback" not in err.decode()
    status = json.loads(sandbox.run("status", "--json").stdout)
    claude_state = status["providers"][0]
    assert (claude_state["requests"], claude_state["failures"]) == (2, 2)


# --- status -----------------------------------------------------------------------------------


def test_status_json_after_a_few_asks(sandbox: Sandbox, sim) -> None:
    claude = sim("anthropic", Behavior(statuses=[500, 500]))
    gpt = sim("openai", Behavior(text=ANSWER))
    sandbox.config(
        provider("claude", claude), provider("gpt", gpt), breaker={"failure_threshold": 2}
    )
    for _ in range(3):
        assert sandbox.run("ask", "hi").returncode == 0
    proc = sandbox.run("status", "--json")
    assert proc.returncode == 0
    report = json.loads(proc.stdout)
    jsonschema.validate(report, STATUS_SCHEMA)
    c, g = report["providers"]
    # Ask 1: claude failed twice (breaker opens), gpt answered; asks 2-3 skipped claude.
    assert (c["name"], c["state"], c["requests"], c["failures"]) == ("claude", "open", 2, 2)
    assert c["consecutive_failures"] == 2 and c["success_rate"] == 0
    assert 0 < c["cooldown_remaining_s"] <= 30
    assert c["last_error"]["status"] == 500 and c["last_error"]["class"] == "transient"
    assert (g["state"], g["requests"], g["successes"], g["success_rate"]) == ("closed", 3, 3, 1)
    assert g["latency_ms"]["p50"] > 0 and g["ttft_ms"]["p50"] > 0
    assert g["score"] > c["score"]
    assert claude.count == 2
    table = sandbox.run("status")
    assert table.returncode == 0
    assert "claude" in table.stdout and "open" in table.stdout and "last error" in table.stdout


def test_status_open_close_and_reset_change_the_saved_state(sandbox: Sandbox, sim) -> None:
    claude = sim("anthropic", Behavior(text=ANSWER))
    gpt = sim("openai", Behavior(text="from gpt"))
    sandbox.config(provider("claude", claude), provider("gpt", gpt))

    def states(*args: str) -> dict[str, tuple[str, int]]:
        report = json.loads(sandbox.run("status", "--json", *args).stdout)
        return {p["name"]: (p["state"], p["requests"]) for p in report["providers"]}

    assert states("--open", "claude") == {"claude": ("open", 0), "gpt": ("closed", 0)}
    assert sandbox.run("ask", "hi").stdout == "from gpt\n"
    assert claude.count == 0
    closed = sandbox.run("status", "--close", "claude")
    assert closed.returncode == 0 and "claude: breaker closed" in closed.stderr
    assert sandbox.run("ask", "hi").stdout == ANSWER + "\n"
    assert states("--reset", "gpt") == {"claude": ("closed", 1), "gpt": ("closed", 0)}
    assert states("--reset") == {"claude": ("closed", 0), "gpt": ("closed", 0)}
    bad = sandbox.run("status", "--open", "nobody")
    assert bad.returncode == 2 and "no provider named 'nobody'" in bad.stderr


# --- health -----------------------------------------------------------------------------------


def test_health_exit_codes_follow_monitoring_conventions(sandbox: Sandbox, sim) -> None:
    up1, up2 = sim("anthropic"), sim("ollama")
    down = sim("openai", Behavior(health_status=503))
    sandbox.config(provider("a", up1), provider("b", up2), name="ok.yaml")
    assert sandbox.run("health").returncode == 0
    sandbox.config(provider("a", up1), provider("b", down), name="warn.yaml")
    warn = sandbox.run("health")
    assert warn.returncode == 1 and "WARNING" in warn.stdout
    sandbox.config(
        provider("b", down), provider("c", refused_url(), kind="gemini"), name="crit.yaml"
    )
    crit = sandbox.run("health")
    assert crit.returncode == 2 and "CRITICAL" in crit.stdout
    (sandbox.root / "bad.yaml").write_text("providers: [{name: a, kind: nope, model: m}]\n")
    bad = sandbox.run("health", "--config", str(sandbox.root / "bad.yaml"))
    assert bad.returncode == 3 and "bad.yaml:1: providers[0].kind" in bad.stderr
    no_traceback(bad)


def test_health_json_prometheus_and_breaker_feedback(sandbox: Sandbox, sim) -> None:
    up = sim("anthropic")
    sandbox.config(provider("up", up), provider("gone", refused_url(), kind="openai"))
    prom = sandbox.root / "metrics" / "failover.prom"
    prom.parent.mkdir()
    proc = sandbox.run("health", "--json", "--prometheus", str(prom))
    assert proc.returncode == 1
    out = json.loads(proc.stdout)
    assert (out["status"], out["exit_code"]) == ("WARNING", 1)
    rows = {r["name"]: r for r in out["providers"]}
    assert rows["up"]["ok"] and rows["up"]["breaker"] == "closed"
    assert not rows["gone"]["ok"] and rows["gone"]["breaker"] == "open"  # a failed check opens
    text = prom.read_text()
    assert 'failover_provider_up{provider="up",kind="anthropic",model="up-model"} 1\n' in text
    assert 'failover_provider_up{provider="gone",kind="openai",model="gone-model"} 0\n' in text
    assert 'failover_breaker_state{provider="gone",kind="openai",model="gone-model"} 2\n' in text
    assert "# TYPE failover_provider_latency_seconds gauge" in text
    assert "failover_health_status 1\n" in text
    assert [p.name for p in prom.parent.iterdir()] == ["failover.prom"]  # no temporary left
    status = json.loads(sandbox.run("status", "--json").stdout)
    assert status["providers"][1]["state"] == "open"  # health results reached the state


def test_health_watch_repeats_until_interrupted(sandbox: Sandbox, sim) -> None:
    up = sim("openai")
    sandbox.config(provider("up", up))
    proc = subprocess.Popen(
        [*FAILOVER, "health", "--watch", "0.1", "--json"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=sandbox.env,
    )  # fmt: skip
    assert proc.stdout is not None
    rounds = [json.loads(proc.stdout.readline()) for _ in range(2)]  # one JSON object per line
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=20)
    assert [r["status"] for r in rounds] == ["OK", "OK"]
    assert rounds[1]["checked_at"] > rounds[0]["checked_at"] and up.count >= 2
    assert proc.returncode == 0 and b"Traceback" not in err


def test_prometheus_text_escapes_label_values() -> None:
    from failover_cli.cli.health import prometheus_text

    row = {"name": 'a"b\\c\nd', "kind": "openai", "model": "m", "ok": True}
    text = prometheus_text(
        [{**row, "latency_ms": 1500.0, "breaker": "half_open"}], 0, 1764093451.25
    )
    labels = '{provider="a\\"b\\\\c\\nd",kind="openai",model="m"}'
    assert f"failover_provider_latency_seconds{labels} 1.5\n" in text
    assert f"failover_breaker_state{labels} 1\n" in text
    assert text.endswith("failover_health_last_run_timestamp_seconds 1764093451.25\n")


# --- bench ------------------------------------------------------------------------------------


def test_bench_reports_each_provider_and_records_history(sandbox: Sandbox, sim) -> None:
    good = sim("openai", Behavior(text=ANSWER))
    flaky = sim("anthropic", Behavior(statuses=[500, 200, 500, 200]))
    sandbox.config(
        provider("good", good, cost={"input_per_mtok": 1, "output_per_mtok": 1}),
        provider("flaky", flaky),
    )
    proc = sandbox.run("bench", "-n", "4", "-j", "2", "--json")
    assert proc.returncode == 0, proc.stderr
    results = {r["provider"]: r for r in json.loads(proc.stdout)["providers"]}
    g, f = results["good"], results["flaky"]
    assert (g["requests"], g["successes"], g["failures"]) == (4, 4, {})
    assert (f["requests"], f["successes"], f["failures"]) == (4, 2, {"transient": 2})
    assert g["latency_ms"]["p50"] > 0 and g["ttft_ms"]["p50"] is not None
    assert g["cost_per_1k_requests_usd"] > 0 and f["cost_per_1k_requests_usd"] is None
    assert good.count == 4 and flaky.count == 4  # direct calls: no retries, no failover
    status = {p["name"]: p for p in json.loads(sandbox.run("status", "--json").stdout)["providers"]}
    assert (status["good"]["successes"], status["flaky"]["failures"]) == (4, 2)
    csv_out = sandbox.run("bench", "-n", "1", "-p", "good", "--csv").stdout.splitlines()
    assert csv_out[0].startswith("provider,kind,model,requests,successes,failures_transient")
    assert len(csv_out) == 2 and csv_out[1].startswith("good,openai,good-model,1,1,0,")


def test_bench_skips_a_provider_without_key(sandbox: Sandbox, sim) -> None:
    sandbox.config(provider("gpt", sim("openai")), provider("nokey", sim("anthropic"),
                   api_key_env="FAILOVER_TEST_UNSET_KEY"))  # fmt: skip
    proc = sandbox.run("bench", "-n", "2", "--json")
    results = {r["provider"]: r for r in json.loads(proc.stdout)["providers"]}
    assert "FAILOVER_TEST_UNSET_KEY" in results["nokey"]["skipped"]
    assert results["gpt"]["successes"] == 2 and proc.returncode == 0


# --- config -----------------------------------------------------------------------------------


def test_config_show_never_prints_a_key(sandbox: Sandbox, sim) -> None:
    canary = "sk-show-canary-12345"
    sandbox.env[SIM_KEY_ENV] = canary
    sandbox.config(
        provider("a", sim("anthropic")),
        provider("b", sim("openai"), api_key_env="FAILOVER_TEST_UNSET_KEY"),
        state={"url": "redis://user:hunter22@127.0.0.1:6390/0"},
    )
    table = sandbox.run("config", "show")
    data = sandbox.run("config", "show", "--json")
    assert table.returncode == data.returncode == 0
    for out in (table.stdout + table.stderr, data.stdout + data.stderr):
        assert canary not in out and "hunter22" not in out
    assert f"{SIM_KEY_ENV} (set)" in table.stdout
    assert "FAILOVER_TEST_UNSET_KEY (NOT SET)" in table.stdout
    rows = json.loads(data.stdout)["providers"]
    assert [(r["api_key_env"], r["api_key_set"]) for r in rows] == [
        (SIM_KEY_ENV, True),
        ("FAILOVER_TEST_UNSET_KEY", False),
    ]


def test_config_validate_lists_every_problem(sandbox: Sandbox) -> None:
    path = sandbox.root / "providers.yaml"
    path.write_text(
        "providers:\n  - {name: a, kind: openai, model: m}\n  - {name: a, kind: olama, model: m}\n"
        "breaker: {cooldown: -1}\n",
        encoding="utf-8",
    )
    proc = sandbox.run("config", "validate", "--config", str(path))
    assert proc.returncode == 2
    lines = proc.stdout.splitlines()
    assert len(lines) == 3
    assert lines[0].startswith(f"{path}:3: providers[1].kind: expected one of")
    assert "did you mean 'ollama'" in lines[0] or any("did you mean 'ollama'" in ln for ln in lines)
    assert any(ln.startswith(f"{path}:3: providers[1].name: duplicate") for ln in lines)
    assert any(ln.startswith(f"{path}:4: breaker.cooldown: must be >= 0") for ln in lines)
    assert "3 problems" in proc.stderr
    good = sandbox.config(provider("a", "http://127.0.0.1:9", kind="ollama"))
    ok = sandbox.run("config", "validate")
    assert ok.returncode == 0 and ok.stdout.startswith(f"{good}: OK")


def test_config_init_writes_the_starter_and_never_overwrites(sandbox: Sandbox) -> None:
    target = sandbox.root / "xdg-config" / "failover" / "providers.yaml"
    first = sandbox.run("config", "init")
    assert first.returncode == 0 and first.stdout.strip() == str(target)
    assert target.read_text() == STARTER_YAML
    target.write_text("# mine\n")
    again = sandbox.run("config", "init")
    assert again.returncode == 2 and "--force" in again.stderr
    assert target.read_text() == "# mine\n"
    assert sandbox.run("config", "init", "--force").returncode == 0
    assert target.read_text() == STARTER_YAML
    paths = sandbox.run("config", "path").stdout
    assert f"config:      {target}" in paths and "state.json" in paths
    assert f"cache:       {sandbox.root / 'xdg-cache' / 'failover'}" in paths
    assert sandbox.run("config", "show").returncode == 0  # loads it: the CLI caches it
    assert len(list((sandbox.root / "xdg-cache" / "failover" / "config").iterdir())) == 1


def test_starter_matches_the_example_file_and_is_valid() -> None:
    from pathlib import Path

    from failover_cli.config import parse_config

    example = Path(__file__).resolve().parent.parent / "providers.example.yaml"
    assert example.read_text(encoding="utf-8") == STARTER_YAML
    assert [p.name for p in parse_config(STARTER_YAML).providers] == ["claude", "gpt", "llama"]


# --- demo, help, start-up ---------------------------------------------------------------------


def test_demo_fast_shows_the_failover_and_the_recovery(sandbox: Sandbox) -> None:
    proc = sandbox.run("demo", "--fast")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert out.count("answer from gpt") == 3
    assert "breaker closed -> open" in out
    assert "SKIP  claude breaker open" in out
    assert "claude's simulator received 0 requests meanwhile" in out
    assert "breaker half-open -> closed" in out and "answer from claude" in out
    assert out.index("answer from claude") < out.index("Chain 'demo'")
    no_traceback(proc)


@pytest.mark.parametrize(
    "command",
    [["ask"], ["health"], ["status"], ["bench"], ["demo"], ["sim"], ["config", "validate"],
     ["config", "show"], ["config", "path"], ["config", "init"]],
)  # fmt: skip
def test_every_command_has_help_with_examples(command: list[str]) -> None:
    from typer.testing import CliRunner

    from failover_cli.cli.commands import app

    result = CliRunner().invoke(app, [*command, "--help"], prog_name="failover")
    assert result.exit_code == 0
    assert "failover" in result.output
    assert "Example" in result.output or "--kind" in result.output  # sim: its own help


def test_top_level_help_documents_exit_codes(sandbox: Sandbox) -> None:
    proc = sandbox.run("--help")
    assert proc.returncode == 0
    for code, meaning in [
        ("0", "answered"),
        ("1", "no provider could answer"),
        ("2", "usage or configuration error"),
        ("3", "the request itself was rejected"),
        ("130", "interrupted"),
    ]:
        assert re.search(rf"^\s+{code}\s+{meaning}", proc.stdout, re.MULTILINE), code


def test_importing_the_cli_loads_no_heavy_module() -> None:
    code = (
        "import sys, failover_cli.cli.commands\n"
        "heavy = ('rich', 'httpx', 'yaml', 'failover_cli.router', 'failover_cli.providers')\n"
        "print(sorted(m for m in sys.modules if m.startswith(heavy)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_httpx_still_has_its_command_line_after_the_ask_path_skipped_it() -> None:
    code = (
        "from failover_cli.cli.fast import skip_httpx_cli; skip_httpx_cli(); import sys, httpx; "
        "assert 'click' not in sys.modules; httpx.main(['--help'])"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "Usage: httpx" in proc.stdout


def test_a_piped_ask_imports_neither_rich_nor_pydantic(sandbox: Sandbox, sim) -> None:
    sandbox.config(provider("gpt", sim("openai", Behavior(text=ANSWER))))
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "failover_cli", "ask", "hi"],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, env=sandbox.env, timeout=30,
    )  # fmt: skip
    assert (proc.returncode, proc.stdout) == (0, ANSWER + "\n")
    imported = {ln.split("|")[-1].strip() for ln in proc.stderr.splitlines() if "|" in ln}
    assert "httpx" in imported  # the measurement works
    # click is installed (the gateway servers need it): httpx would import its command line
    assert not {m for m in imported if m.split(".")[0] in ("rich", "pydantic", "typer", "click")}
    assert "failover_cli.budget" not in imported  # no budget configured: none of its code


def test_ask_answers_alike_with_and_without_typer(sandbox: Sandbox, sim) -> None:
    sandbox.config(provider("gpt", sim("openai", Behavior(text=ANSWER))))
    fast = sandbox.run("ask", "-v", "-p", "gpt", "hi")  # read without Typer
    typer = sandbox.run("ask", "-vpgpt", "hi")  # combined short options: Typer reads them
    assert fast.returncode == typer.returncode == 0
    assert fast.stdout == typer.stdout == ANSWER + "\n"
    assert "gpt" in fast.stderr and "gpt" in typer.stderr  # the -v trace, both ways


def test_status_shows_what_each_provider_last_reported_of_its_rate_limits(
    sandbox: Sandbox, sim
) -> None:
    gpt = sim("openai", Behavior(text=ANSWER, remaining_requests=7, requests_reset=30.0))
    sandbox.config(provider("gpt", gpt))
    assert sandbox.run("ask", "hi").returncode == 0
    report = json.loads(sandbox.run("status", "--json").stdout)
    limits = report["providers"][0]["last_ratelimit"]
    assert limits["remaining_requests"] == 7
    assert limits["requests_reset_at"] > report["generated_at"]
    table = sandbox.run("status").stdout
    assert "rate limits" in table and "7 requests" in table


def test_status_fits_80_columns_without_cutting_names(sandbox: Sandbox, sim) -> None:
    long_name = "claude-primary-production-eu-west"
    sandbox.config(provider(long_name, sim("anthropic")), provider("gpt", sim("openai")))
    assert sandbox.run("ask", "hello").returncode == 0
    out = sandbox.run("status", env={"COLUMNS": "80"}).stdout
    table = out.split("\n\n")[0].splitlines()
    assert max(len(line) for line in table) <= 80, out
    assert long_name in out and "…" not in out  # names wrap or stay whole, never elided
    assert "in a row" in out  # the fails column says what it counts
    wide = sandbox.run("status", env={"COLUMNS": "200"}).stdout
    assert "trend" in wide and "trend" not in out  # the least useful column goes first


def test_ask_usage_ends_with_one_line_of_provider_tokens_and_cost(sandbox: Sandbox, sim) -> None:
    claude = sim("anthropic", Behavior(failure_rate=1.0, failure_status=503))
    gpt = sim("openai", Behavior(text="four words of answer"))
    cost = {"input_per_mtok": 1000.0, "output_per_mtok": 2000.0}
    sandbox.config(provider("claude", claude), provider("gpt", gpt, cost=cost))
    for extra in ([], ["--no-stream"]):
        proc = sandbox.run("ask", "--usage", *extra, "hello")
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == "four words of answer\n"  # stdout still carries only the answer
        last = proc.stderr.strip().splitlines()[-1]
        found = re.fullmatch(
            r"gpt \(gpt-model\): (\d+) input \+ (\d+) output tokens, \$(\d+\.\d+)", last
        )
        assert found, proc.stderr
        inp, out, usd = int(found[1]), int(found[2]), float(found[3])
        assert out > 0 and usd == pytest.approx((inp * 1000 + out * 2000) / 1e6, rel=0.01)
    assert "tokens" not in sandbox.run("ask", "hello").stderr  # only when asked for


BOX = re.compile("[\u2500-\u257f]")  # box-drawing characters


@pytest.mark.parametrize("command", [["status"], ["health"], ["config", "show"]])
def test_piped_tables_have_no_boxes_or_padding_unless_asked(
    sandbox: Sandbox, sim, command: list[str]
) -> None:
    sandbox.config(provider("gpt", sim("openai")))
    plain = sandbox.run(*command).stdout
    assert "gpt" in plain and not BOX.search(plain), plain
    assert all(line == line.rstrip() for line in plain.splitlines()), plain
    boxed = sandbox.run(*command, "--table").stdout
    assert BOX.search(boxed) and "gpt" in boxed


def test_config_show_fits_80_columns_without_ellipses(sandbox: Sandbox, sim) -> None:
    sandbox.config(
        provider("claude-primary", sim("anthropic")), provider("gpt", sim("openai"), cost=None)
    )
    out = sandbox.run("config", "show", "--table", env={"COLUMNS": "80"}).stdout
    table = out.split("\nretry:")[0].splitlines()
    assert max(len(line) for line in table) <= 80, out
    assert "claude-primary" in out and "…" not in out, out
