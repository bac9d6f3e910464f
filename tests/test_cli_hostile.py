"""The real ``failover`` executable under hostile conditions: signals, closed pipes, absurd
numbers, endless or binary stdin, planted symbolic links, secrets where they do not belong."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import FAILOVER, SIM_KEY_ENV, Sandbox, provider

from failover_cli.sim import Behavior

ANSWER = "A hostile world, a calm answer."
FAILING = Behavior(failure_rate=1.0, failure_status=500)
UNSET = "FAILOVER_TEST_UNSET_KEY"


def no_traceback(*texts: str) -> None:
    for text in texts:
        assert "Traceback" not in text and "Exception ignored" not in text


def strict_json(text: str) -> object:
    """Parse ``text`` as standard JSON: NaN and Infinity are not JSON."""

    def refuse(constant: str) -> object:
        raise AssertionError(f"{constant} in JSON output")

    return json.loads(text, parse_constant=refuse)


# --- SIGTERM ------------------------------------------------------------------------------------


def test_sigterm_exits_143_and_saves_state(sandbox: Sandbox, sim) -> None:
    claude = sim("anthropic", FAILING)
    gpt = sim("openai", Behavior(fault="hang"))
    sandbox.config(provider("claude", claude), provider("gpt", gpt))
    proc = subprocess.Popen(
        [*FAILOVER, "ask", "hi"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, env=sandbox.env, cwd=sandbox.root,
    )  # fmt: skip
    deadline = time.monotonic() + 20
    while gpt.count == 0 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.01)  # waiting for a condition, not proving timing
    assert gpt.count == 1
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 143, err
    assert out == b""
    assert "terminated" in err.decode()
    no_traceback(err.decode())
    state = strict_json(sandbox.state_path.read_text())  # saved whole, not torn
    assert isinstance(state, dict)
    status = json.loads(sandbox.run("status", "--json").stdout)
    claude_state = status["providers"][0]
    assert (claude_state["requests"], claude_state["failures"]) == (2, 2)


# --- closed pipes -------------------------------------------------------------------------------

PIPED_COMMANDS = [
    ["status"], ["status", "--json"], ["config", "show"], ["config", "show", "--json"],
    ["config", "path"], ["config", "validate"], ["health"], ["health", "--json"],
    ["bench", "-n", "1"], ["bench", "-n", "1", "--json"], ["demo", "--fast"], ["--help"],
    ["ask", "--help"], ["--version"], ["ask", "hi"], ["ask", "--json", "hi"],
]  # fmt: skip


@pytest.mark.parametrize("command", PIPED_COMMANDS, ids=" ".join)
def test_every_command_exits_141_when_stdout_is_closed(
    sandbox: Sandbox, sim, command: list[str]
) -> None:
    sandbox.config(provider("gpt", sim("openai", Behavior(text=ANSWER))))
    read_end, write_end = os.pipe()
    os.close(read_end)  # like `| head -c0`: nobody will ever read
    try:
        proc = subprocess.run(
            [*FAILOVER, *command], stdin=subprocess.DEVNULL, stdout=write_end,
            stderr=subprocess.PIPE, env=sandbox.env, cwd=sandbox.root, timeout=60,
        )  # fmt: skip
    finally:
        os.close(write_end)
    err = proc.stderr.decode()
    assert proc.returncode == 141, err
    no_traceback(err)


def test_a_closed_pipe_still_saves_the_state(sandbox: Sandbox, sim) -> None:
    sandbox.config(provider("gpt", sim("openai", Behavior(text=ANSWER))))
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        proc = subprocess.run(
            [*FAILOVER, "status", "--open", "gpt"], stdin=subprocess.DEVNULL, stdout=write_end,
            stderr=subprocess.PIPE, env=sandbox.env, cwd=sandbox.root, timeout=30,
        )  # fmt: skip
    finally:
        os.close(write_end)
    assert proc.returncode == 141
    report = json.loads(sandbox.run("status", "--json").stdout)
    assert report["providers"][0]["state"] == "open"


# --- numbers ------------------------------------------------------------------------------------

BAD_NUMBERS = [
    ["ask", "--temperature", "nan", "q"],
    ["ask", "--temperature=nan", "q"],
    ["ask", "--timeout", "nan", "q"],
    ["ask", "--timeout", "inf", "q"],
    ["ask", "--wait", "inf", "q"],
    ["ask", "--wait", "nan", "q"],
    ["ask", "--max-tokens", "1" + "0" * 30, "q"],
    ["ask", "--temperature", "3", "q"],
    ["health", "--timeout", "nan"],
    ["health", "--watch", "inf"],
    ["bench", "-n", "1" + "0" * 12],
    ["bench", "-j", "1" + "0" * 12],
]


@pytest.mark.parametrize("args", BAD_NUMBERS, ids=" ".join)
def test_non_finite_or_absurd_numbers_are_one_line_usage_errors(
    sandbox: Sandbox, sim, args: list[str]
) -> None:
    gpt = sim("openai", Behavior(text=ANSWER))
    sandbox.config(provider("gpt", gpt))
    proc = sandbox.run(*args)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("failover: error: "), proc.stderr
    option = next(a for a in args if a.startswith("-")).split("=")[0]
    assert option in lines[0]
    assert proc.stdout == "" and gpt.count == 0


def test_usage_errors_are_one_line_everywhere(sandbox: Sandbox) -> None:
    for args in (["bogus"], ["ask", "--bogus", "q"], ["status", "--json", "extra", "args"]):
        proc = sandbox.run(*args)
        assert proc.returncode == 2
        lines = proc.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("failover: error: "), proc.stderr
        assert "--help" in lines[0]


def test_no_arguments_still_print_the_help(sandbox: Sandbox) -> None:
    proc = sandbox.run()
    assert proc.returncode == 2
    assert "Usage" in proc.stdout and "ask" in proc.stdout and proc.stderr == ""


def test_json_output_never_contains_nan_or_infinity(sandbox: Sandbox, sim) -> None:
    sandbox.config(provider("gpt", sim("openai", Behavior(text=ANSWER))))
    assert sandbox.run("ask", "hi").returncode == 0
    state = json.loads(sandbox.state_path.read_text())
    text = json.dumps(state)
    # A hand-edited (or hostile) state file: every number in the samples is not finite.
    planted = text.replace('"samples": [[', '"samples": [[NaN, Infinity, -Infinity, 1, true], [')
    assert planted != text
    sandbox.state_path.write_text(planted)
    proc = sandbox.run("status", "--json")
    assert proc.returncode == 0, proc.stderr
    report = strict_json(proc.stdout)
    assert isinstance(report, dict) and report["providers"][0]["name"] == "gpt"
    table = sandbox.run("status")
    assert table.returncode == 0
    no_traceback(table.stderr)


# --- stdin --------------------------------------------------------------------------------------


def test_stdin_over_the_bound_is_refused_in_one_line(sandbox: Sandbox, sim) -> None:
    gpt = sim("openai", Behavior(text=ANSWER))
    sandbox.config(provider("gpt", gpt))
    proc = sandbox.run("ask", "-", input=b"y\n" * (9 << 20))  # 18 MiB
    assert proc.returncode == 2
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and "16 MiB" in lines[0], proc.stderr
    assert gpt.count == 0


def test_endless_stdin_is_cut_off_with_flat_memory(sandbox: Sandbox, sim) -> None:
    gpt = sim("openai", Behavior(text=ANSWER))
    sandbox.config(provider("gpt", gpt))
    yes = subprocess.Popen(["yes"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert yes.stdout is not None
    try:
        # The child may allocate at most 256 MiB of data: reading the endless input whole
        # would fail. (Its ru_maxrss cannot tell: Linux carries the forking parent's peak, a
        # pytest worker that imported the provider SDKs, across exec.)
        proc = subprocess.Popen(
            [*FAILOVER, "ask", "-"], stdin=yes.stdout, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, env=sandbox.env, cwd=sandbox.root,
            preexec_fn=_limit_data,
        )  # fmt: skip
        yes.stdout.close()  # only the child reads it now
        _, status, _ = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        err = proc.stderr.read().decode() if proc.stderr else ""
    finally:
        yes.kill()
        yes.wait()
    assert proc.returncode == 2, err
    assert "16 MiB" in err and gpt.count == 0


def _limit_data() -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_DATA, (256 << 20, 256 << 20))


def test_stdin_that_is_not_text_is_refused(sandbox: Sandbox, sim) -> None:
    gpt = sim("openai", Behavior(text=ANSWER))
    sandbox.config(provider("gpt", gpt))
    proc = sandbox.run("ask", "explain", input=b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    assert proc.returncode == 2
    assert "not text" in proc.stderr or "not valid UTF-8" in proc.stderr
    nul = sandbox.run("ask", "-", input=b"valid utf-8 but \x00 binary")
    assert nul.returncode == 2 and "not text" in nul.stderr
    assert gpt.count == 0


# --- what -v and failures say -------------------------------------------------------------------


def test_verbose_names_the_config_file_and_the_chain(sandbox: Sandbox, sim) -> None:
    path = sandbox.config(provider("gpt", sim("openai", Behavior(text=ANSWER))), chain="team-a")
    proc = sandbox.run("ask", "-v", "hi")
    assert proc.returncode == 0, proc.stderr
    first = proc.stderr.splitlines()[0]
    assert str(path) in first and "team-a" in first


def test_missing_keys_on_the_built_in_chain_say_so_and_point_to_config_init(
    sandbox: Sandbox,
) -> None:
    sandbox.env.pop("FAILOVER_CONFIG", None)  # no file anywhere: the built-in chain
    proc = sandbox.run("ask", "-v", "-p", "claude", "-p", "gpt", "hi")
    assert proc.returncode == 1
    assert "built-in chain" in proc.stderr.splitlines()[0]  # the -v header
    text = proc.stderr
    assert "built-in chain is in use" in text
    assert "failover config init" in text
    assert "ANTHROPIC_API_KEY" in text and "OPENAI_API_KEY" in text
    no_traceback(text)


def test_missing_keys_on_a_configured_chain_name_the_variables(sandbox: Sandbox, sim) -> None:
    sandbox.config(
        provider("a", sim("anthropic"), api_key_env=UNSET),
        provider("b", sim("anthropic"), api_key_env=UNSET + "_2"),
    )
    proc = sandbox.run("ask", "hi")
    assert proc.returncode == 1
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("failover: error:")]
    assert len(errors) == 1 and "API key" in errors[0]
    assert UNSET in proc.stderr and UNSET + "_2" in proc.stderr
    assert "built-in" not in proc.stderr
    data = json.loads(sandbox.run("ask", "--json", "hi").stdout)
    assert UNSET in data["error"]["hint"]


# --- files and secrets --------------------------------------------------------------------------


def test_prometheus_file_refuses_a_planted_symlink(sandbox: Sandbox, sim) -> None:
    sandbox.config(provider("up", sim("openai")))
    victim = sandbox.root / "victim.txt"
    victim.write_text("precious\n")
    target = sandbox.root / "failover.prom"
    target.symlink_to(victim)
    proc = sandbox.run("health", "--prometheus", str(target))
    assert proc.returncode == 3
    assert victim.read_text() == "precious\n"
    assert target.is_symlink()  # neither followed nor replaced
    assert "cannot write" in proc.stderr and "symbolic link" in proc.stderr
    no_traceback(proc.stderr)


def test_prometheus_temporary_name_is_not_predictable(tmp_path: Path) -> None:
    from failover_cli.cli.wiring import write_atomically

    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    target = tmp_path / "failover.prom"
    (tmp_path / f"failover.prom.{os.getpid()}.tmp").symlink_to(victim)
    write_atomically(str(target), "failover_health_status 0\n")
    assert victim.read_text() == "precious\n"
    assert target.read_text() == "failover_health_status 0\n"
    assert oct(target.stat().st_mode & 0o777) == oct(0o644)  # node_exporter reads it


def test_config_show_hides_url_passwords_and_keys_pasted_as_variable_names(
    sandbox: Sandbox, sim
) -> None:
    pasted = "gsk_live_4f8a2b9c7d1e3f5a"  # a key, not a variable name
    url = sim("openai").base_url.replace("http://", "http://deploy:hunter22@")
    sandbox.config(
        provider("a", url + "/v1?key=AIzaQuerySecret123", kind="openai"),
        provider("b", sim("anthropic"), api_key_env=pasted),
    )
    table = sandbox.run("config", "show")
    data = sandbox.run("config", "show", "--json")
    for proc in (table, data):
        out = proc.stdout + proc.stderr
        for secret in ("hunter22", pasted, "AIzaQuerySecret123"):
            assert secret not in out
    if data.returncode == 0:  # the configuration layer may refuse the file outright
        rows = json.loads(data.stdout)["providers"]
        assert rows[0]["base_url"].startswith("http://deploy:***@127.0.0.1:")
        assert rows[0]["base_url"].endswith("/v1?key=***")
        assert rows[1]["api_key_env"] == "***"
        assert "deploy:***@" in table.stdout


class _EchoKey(BaseHTTPRequestHandler):
    """A hostile or careless server: its 401 echoes the key it was sent, whole."""

    def _deny(self) -> None:
        key = self.headers.get("authorization", "").removeprefix("Bearer ")
        self.rfile.read(int(self.headers.get("content-length") or 0))
        body = json.dumps({"error": {"message": f"Incorrect API key provided: {key}",
                                     "type": "invalid_request_error"}}).encode()  # fmt: skip
        self.send_response(401)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _deny

    def log_message(self, *args: object) -> None:
        """Quiet."""


@pytest.fixture
def echo_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _EchoKey)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("dirt", ["\n", " \r\n", "\t"])
def test_a_key_with_stray_whitespace_is_never_printed(
    sandbox: Sandbox, echo_server: str, dirt: str
) -> None:
    canary = "sk-canary-whitespace-4e7d1c"
    sandbox.env[SIM_KEY_ENV] = canary + dirt
    sandbox.config(provider("echo", echo_server, kind="openai"))
    runs = [
        sandbox.run("ask", "-v", "hi"),
        sandbox.run("ask", "--json", "hi"),
        sandbox.run("health", "--json"),
        sandbox.run("health"),
        sandbox.run("status"),
        sandbox.run("status", "--json"),
        sandbox.run("config", "show", "--json"),
    ]
    assert runs[0].returncode == 1
    for proc in runs:
        assert canary not in proc.stdout + proc.stderr, proc.args
        no_traceback(proc.stderr)


def test_a_key_in_a_stored_error_message_is_never_printed(sandbox: Sandbox, sim) -> None:
    canary = "sk-canary-stored-9b2f6a11"
    sandbox.config(provider("gpt", sim("openai", Behavior(text=ANSWER))))
    assert sandbox.run("ask", "hi").returncode == 0
    state = json.loads(sandbox.state_path.read_text())
    text = json.dumps(state)
    message = f"Incorrect API key provided: {canary}\\u00e9"  # as an older version stored it
    planted = text.replace(
        '"last_error": null',
        f'"last_error": {{"at": 1.0, "class": "provider", "status": 401, "message": "{message}"}}',
        1,
    )
    assert planted != text
    sandbox.state_path.write_text(planted)
    env = {SIM_KEY_ENV: canary + "é\n"}
    for args in (["status"], ["status", "--json"]):
        proc = sandbox.run(*args, env=env)
        assert proc.returncode == 0, proc.stderr
        assert canary not in proc.stdout + proc.stderr


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://user:secret@host:8443/v1", "https://user:***@host:8443/v1"),
        ("https://ghp_tokenAsUser@host/v1", "https://***@host/v1"),
        ("http://u:p%40ss@[::1]:11434", "http://u:***@[::1]:11434"),
        ("https://host/v1?key=AIzaXYZ&alt=sse", "https://host/v1?key=***&alt=sse"),
        ("https://host/v1?api_token=t0k3n", "https://host/v1?api_token=***"),
        ("https://api.openai.com", "https://api.openai.com"),
        ("redis://:pw@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
    ],
)
def test_urls_are_shown_without_their_secrets(url: str, shown: str) -> None:
    from failover_cli.cli.output import redact_url

    assert redact_url(url) == shown


def test_clean_redacts_every_spelling_of_a_key_and_drops_non_finite_numbers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from failover_cli.cli.output import clean, json_text

    monkeypatch.setenv("SOME_VENDOR_API_KEY", " sk-dirty-key-77c1\n")
    data = {
        "a": "raw sk-dirty-key-77c1 here",
        "b": ["escaped 'sk-dirty-key-77c1\\n'", "url key=sk-dirty-key-77c1%0A"],
        "n": [float("nan"), float("inf"), 1.5],
    }
    out = clean(data)
    assert "sk-dirty-key-77c1" not in json.dumps(out)
    assert out["n"] == [None, None, 1.5]
    assert "NaN" not in json_text(data) and "Infinity" not in json_text(data)
    assert math.isnan(clean({"n": float("nan")}, finite=False)["n"])  # tables show "nan"
