"""The terminal path: ``failover`` in a pseudo-terminal (colour, spinner; NO_COLOR honoured)."""

from __future__ import annotations

import fcntl
import os
import re
import select
import signal
import struct
import subprocess
import termios
import time

from conftest import FAILOVER, Sandbox, provider

from failover_cli.sim import Behavior, refused_url

SGR = re.compile(rb"\x1b\[[0-9;]*m")  # a colour/style escape sequence
ANSWER = "Terminals deserve colour."


def run_in_pty(
    sandbox: Sandbox, *args: str, env: dict[str, str] | None = None, interrupt_at: int = 0
) -> tuple[int, bytes]:
    """Run ``failover *args`` with stdin, stdout and stderr on one pseudo-terminal; with
    ``interrupt_at``, press Ctrl-C (SIGINT) once that many bytes have been written."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    full_env = {**sandbox.env, "TERM": "xterm-256color", **(env or {})}
    full_env.pop("COLUMNS", None)
    proc = subprocess.Popen(
        [*FAILOVER, *args], stdin=slave, stdout=slave, stderr=slave, env=full_env,
        cwd=sandbox.root, start_new_session=True,
    )  # fmt: skip
    os.close(slave)
    out = bytearray()
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], deadline - time.monotonic())
            if not ready:
                break
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            out += data
            if interrupt_at and len(out) >= interrupt_at:
                interrupt_at = 0
                proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    return code, bytes(out).replace(b"\r\n", b"\n")


def _claude_down_gpt_answers(sandbox: Sandbox, sim, ttft: float) -> None:
    """A chain whose first provider always fails (503) and whose second answers ANSWER,
    its first token after ``ttft`` seconds."""
    claude = sim("anthropic", Behavior(failure_rate=1.0, failure_status=503))
    gpt = sim("openai", Behavior(text=ANSWER, ttft=ttft))
    sandbox.config(provider("claude", claude), provider("gpt", gpt))


def test_ask_on_a_terminal_shows_colour_and_the_answer(sandbox: Sandbox, sim) -> None:
    _claude_down_gpt_answers(sandbox, sim, ttft=0.2)
    code, out = run_in_pty(sandbox, "ask", "-v", "hello")
    assert code == 0, out
    assert SGR.search(out)  # coloured trace (and spinner)
    plain = SGR.sub(b"", out)
    assert b"FAIL" in plain and b"claude" in plain
    assert ANSWER.encode() in plain


def test_no_color_removes_colour_but_keeps_the_spinner(sandbox: Sandbox, sim) -> None:
    _claude_down_gpt_answers(sandbox, sim, ttft=1.0)
    code, out = run_in_pty(sandbox, "ask", "-v", "hello", env={"NO_COLOR": "1"})
    assert code == 0, out
    assert not SGR.search(out)  # no colour or style...
    assert b"waiting for gpt" in out  # ...but still the spinner (no-color.org: colour only)
    plain = re.sub(rb"\x1b\[[0-9;?]*[A-Za-z]|\r", b"", out)
    assert b"  FAIL  claude transient 503" in plain
    assert ANSWER.encode() in plain and b"  OK    gpt answered" in plain


def test_term_dumb_turns_off_every_escape_sequence(sandbox: Sandbox, sim) -> None:
    _claude_down_gpt_answers(sandbox, sim, ttft=0.2)
    code, out = run_in_pty(sandbox, "ask", "-v", "hello", env={"TERM": "dumb"})
    assert code == 0, out
    assert b"\x1b" not in out
    assert b"  FAIL  claude transient 503" in out
    # On a shared terminal the answer's line is ended before the next trace line.
    assert (ANSWER + "\n  OK    gpt answered").encode() in out


def test_health_table_on_a_terminal_is_coloured_unless_no_color(sandbox: Sandbox, sim) -> None:
    sandbox.config(provider("up", sim("openai")), provider("down", refused_url(), kind="ollama"))
    code, out = run_in_pty(sandbox, "health")
    assert code == 1
    assert SGR.search(out) and b"WARNING" in SGR.sub(b"", out)
    code, out = run_in_pty(sandbox, "health", env={"NO_COLOR": "1"})
    assert code == 1
    assert not SGR.search(out) and b"WARNING" in out


def test_a_terminal_on_stdin_is_never_read_as_the_prompt(sandbox: Sandbox, sim) -> None:
    gpt = sim("openai")
    sandbox.config(provider("gpt", gpt))
    code, out = run_in_pty(sandbox, "ask", env={"NO_COLOR": "1"})
    assert code == 2
    assert b"no prompt" in out and gpt.count == 0


def test_health_watch_redraws_a_live_table_until_ctrl_c(sandbox: Sandbox, sim) -> None:
    up = sim("openai")
    sandbox.config(provider("up", up))
    code, out = run_in_pty(sandbox, "health", "--watch", "0.1", interrupt_at=4000)
    assert code == 0  # Ctrl-C is how a watch ends, not a failure
    assert out.count(b"Ctrl-C to stop") >= 2  # redrawn in place...
    assert b"\x1b[1A" in out  # ...by moving the cursor up
    assert up.count >= 2 and b"interrupted" not in out


def test_the_spinner_names_the_provider_the_attempt_and_the_time_waited(
    sandbox: Sandbox, sim
) -> None:
    gpt = sim("openai", Behavior(text=ANSWER, statuses=[500], ttft=1.0))
    sandbox.config(provider("gpt", gpt))
    code, out = run_in_pty(sandbox, "ask", "hello")
    assert code == 0, out
    plain = SGR.sub(b"", out).decode()
    waited = [float(s) for s in re.findall(r"waiting for gpt \(attempt 2, (\d+\.\d) s\)", plain)]
    assert len(waited) >= 2, plain  # redrawn while the first token is awaited...
    assert max(waited) > min(waited)  # ...with the time waited growing
    assert ANSWER in plain


def test_a_mid_stream_switch_is_one_dim_line_on_a_terminal(sandbox: Sandbox, sim) -> None:
    broken = Behavior(text="one two three four", fault="midstream_error", fault_after_tokens=2)
    sandbox.config(provider("claude", sim("anthropic", broken)), provider("gpt", sim("openai")))
    code, out = run_in_pty(sandbox, "ask", "hello")
    assert code == 0, out
    dim = re.findall(rb"\x1b\[2m([^\x1b]*switched to gpt[^\x1b]*)", out)
    assert len(dim) == 1, out
    assert b"claude broke off mid-answer" in dim[0] and b"continues it (instruct)" in dim[0]


# --- the route display, in process ------------------------------------------------------------


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class _FakeAnswer:
    isatty = True
    at_line_start = False

    def __init__(self) -> None:
        self.written: list[str] = []

    def write(self, text: str) -> None:
        self.written.append(text)
        self.at_line_start = text.endswith("\n")


def _console():
    import io

    from rich.console import Console

    buf = io.StringIO()
    return Console(file=buf, force_terminal=True, color_system=None, width=200), buf


def test_waiting_text_counts_the_seconds_of_the_current_attempt() -> None:
    from failover_cli.cli.render import Waiting

    clock = _Clock()
    waiting = Waiting("claude", 3, clock)
    assert waiting.__rich__().plain == "waiting for claude (attempt 3, 0.0 s)"
    clock.now += 2.46
    assert waiting.__rich__().plain == "waiting for claude (attempt 3, 2.5 s)"


def test_the_spinner_follows_attempt_started_events() -> None:
    from failover_cli.cli.render import RouteDisplay, Waiting
    from failover_cli.types import AttemptStarted

    updates: list[object] = []

    class Status:
        def update(self, renderable: object) -> None:
            updates.append(renderable)

    console, _ = _console()
    display = RouteDisplay(console, verbose=False, animate=True, clock=_Clock())
    display._status = Status()
    display(AttemptStarted("gpt", 2))
    (waiting,) = updates
    assert isinstance(waiting, Waiting) and (waiting.provider, waiting.attempt) == ("gpt", 2)


def test_a_switch_ends_the_answer_line_before_its_note() -> None:
    from failover_cli.cli.render import RouteDisplay
    from failover_cli.types import StreamSwitched

    console, buf = _console()
    answer = _FakeAnswer()
    display = RouteDisplay(console, verbose=False, animate=True, answer=answer)
    display(StreamSwitched("claude", "gpt", "restart", 0))
    assert answer.written == ["\n"]
    assert buf.getvalue() == (
        "failover: claude broke off mid-answer; switched to gpt: the answer restarts from the "
        "beginning\n"
    )


def test_trace_lines_are_scrubbed_of_secrets() -> None:
    from failover_cli.cli.render import RouteDisplay
    from failover_cli.types import AttemptFailed, ErrorClass, ParameterAdjusted

    console, buf = _console()
    display = RouteDisplay(
        console, verbose=True, animate=False, scrub=lambda s: s.replace("sk-secret", "[X]")
    )
    display(AttemptFailed("gpt", ErrorClass.PROVIDER, 401, "bad key sk-secret", 3.0, False))
    display(ParameterAdjusted("gpt", "temperature", "dropped", "sk-secret is odd"))
    out = buf.getvalue()
    assert "sk-secret" not in out and out.count("[X]") == 2
    assert "ADJUST gpt temperature dropped" in out
