"""Conversations: ``ask -c`` / ``--cid`` send the earlier turns through the chain (so a
conversation begun on one provider goes on on another), and ``failover chat`` in a
pseudo-terminal: turns, ``/exit``, Ctrl-C stopping an answer but not the session."""

from __future__ import annotations

import fcntl
import json
import os
import select
import signal
import struct
import subprocess
import termios
import time
from typing import Any

from conftest import FAILOVER, Sandbox, provider

from failover_cli.sim import Behavior

FIRST = "Claude answered first."
SECOND = "GPT carried on."


def bodies(s) -> list[dict[str, Any]]:
    """The JSON bodies of the completion requests a simulator received."""
    return [r.json for r in s.requests if r.method == "POST"]


def turns(body: dict[str, Any]) -> list[tuple[str, str]]:
    """(role, text) of each message of an OpenAI or Anthropic request body."""
    out = []
    for m in body["messages"]:
        content = m["content"]
        if isinstance(content, list):
            content = "".join(p.get("text", "") for p in content)
        out.append((m["role"], content))
    return out


def claude_once_then_down(sim) -> Any:
    """An Anthropic simulator that answers FIRST once, then is down (503) for good."""
    return sim("anthropic", Behavior(text=FIRST, statuses=[200], failure_rate=1.0,
                                     failure_status=503))  # fmt: skip


def logs(sandbox: Sandbox) -> list[dict[str, Any]]:
    proc = sandbox.run("logs", "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_a_conversation_begun_on_claude_continues_on_gpt(sandbox: Sandbox, sim) -> None:
    claude = claude_once_then_down(sim)
    gpt = sim("openai", Behavior(text=SECOND))
    sandbox.config(provider("claude", claude), provider("gpt", gpt))
    first = sandbox.run("ask", "-s", "Be brief.", "Tell me about breakers")
    assert first.returncode == 0 and first.stdout == FIRST + "\n", first.stderr
    second = sandbox.run("ask", "-c", "And after that?")
    assert second.returncode == 0 and second.stdout == SECOND + "\n", second.stderr
    (body,) = bodies(gpt)
    assert turns(body) == [
        ("system", "Be brief."),  # the original system prompt is kept
        ("user", "Tell me about breakers"),
        ("assistant", FIRST),
        ("user", "And after that?"),
    ]
    newest, oldest = logs(sandbox)
    assert newest["cid"] == oldest["cid"] and newest["system"] == "Be brief."
    assert (oldest["provider"], newest["provider"]) == ("claude", "gpt")
    # Without -c: a new conversation, no earlier turns.
    third = sandbox.run("ask", "Unrelated")
    assert third.returncode == 0
    assert turns(bodies(gpt)[-1]) == [("user", "Unrelated")]
    assert logs(sandbox)[0]["cid"] != newest["cid"]


def test_cid_continues_a_given_conversation_and_system_can_change(sandbox: Sandbox, sim) -> None:
    gpt = sim("openai", Behavior(text=SECOND))
    sandbox.config(provider("gpt", gpt))
    assert sandbox.run("ask", "-s", "Old system.", "conversation A").returncode == 0
    assert sandbox.run("ask", "conversation B").returncode == 0
    a_cid = logs(sandbox)[1]["cid"]
    proc = sandbox.run("ask", "--cid", a_cid, "-s", "New system.", "back to A")
    assert proc.returncode == 0, proc.stderr
    assert turns(bodies(gpt)[-1]) == [
        ("system", "New system."),
        ("user", "conversation A"),
        ("assistant", SECOND),
        ("user", "back to A"),
    ]
    assert logs(sandbox)[0]["cid"] == a_cid
    unknown = sandbox.run("ask", "--cid", "nope", "hi")
    assert unknown.returncode == 2 and "no conversation 'nope'" in unknown.stderr
    assert len(bodies(gpt)) == 3  # nothing sent for it


def test_ask_json_names_the_conversation_it_recorded(sandbox: Sandbox, sim) -> None:
    sandbox.config(provider("gpt", sim("openai", Behavior(text=SECOND))))
    first = sandbox.run("ask", "--json", "one")
    assert first.returncode == 0, first.stderr
    cid = json.loads(first.stdout)["conversation"]
    second = sandbox.run("ask", "--json", "-c", "two")
    assert json.loads(second.stdout)["conversation"] == cid
    assert [e["cid"] for e in logs(sandbox)] == [cid, cid]
    unlogged = sandbox.run("ask", "--json", "--no-log", "three")
    assert "conversation" not in json.loads(unlogged.stdout)  # nothing to continue


def test_continuing_with_no_log_reads_but_does_not_record(sandbox: Sandbox, sim) -> None:
    gpt = sim("openai", Behavior(text=SECOND))
    sandbox.config(provider("gpt", gpt))
    assert sandbox.run("ask", "one").returncode == 0
    assert sandbox.run("ask", "-c", "--no-log", "two").returncode == 0
    assert [t for t in turns(bodies(gpt)[-1]) if t[0] == "user"] == [
        ("user", "one"),
        ("user", "two"),
    ]
    assert [e["prompt"] for e in logs(sandbox)] == ["one"]


# --- failover chat in a pseudo-terminal ---------------------------------------------------


class Terminal:
    """``failover *args`` on a pseudo-terminal, driven by what it prints."""

    def __init__(self, sandbox: Sandbox, *args: str) -> None:
        self.master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
        env = {**sandbox.env, "TERM": "dumb"}
        env.pop("COLUMNS", None)
        self.proc = subprocess.Popen(
            [*FAILOVER, *args], stdin=slave, stdout=slave, stderr=slave, env=env,
            cwd=sandbox.root, start_new_session=True,
        )  # fmt: skip
        os.close(slave)
        self.out = bytearray()

    def expect(self, text: str, timeout: float = 20) -> None:
        """Read until ``text`` has been printed (after what was expected before)."""
        deadline = time.monotonic() + timeout
        needle = text.encode()
        while needle not in self.out:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self.master], [], [], max(0.0, left))
            if not ready:
                raise AssertionError(f"{text!r} not printed; got {bytes(self.out)!r}")
            try:
                data = os.read(self.master, 65536)
            except OSError:
                data = b""
            if not data:
                raise AssertionError(f"ended before {text!r}; got {bytes(self.out)!r}")
            self.out += data
        self.out = self.out[self.out.index(needle) + len(needle) :]

    def type(self, line: str) -> None:
        os.write(self.master, line.encode() + b"\r")

    def close(self) -> int:
        try:
            return self.proc.wait(timeout=20)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
            os.close(self.master)


def test_chat_two_turns_then_exit(sandbox: Sandbox, sim) -> None:
    claude = claude_once_then_down(sim)
    gpt = sim("openai", Behavior(text=SECOND))
    sandbox.config(provider("claude", claude), provider("gpt", gpt))
    term = Terminal(sandbox, "chat", "-s", "Be brief.")
    try:
        term.expect("/exit")  # the opening note says how to leave
        term.expect("> ")
        term.type("first turn")
        term.expect(FIRST)
        term.expect("> ")
        term.type("second turn")  # claude is down now: gpt goes on with the conversation
        term.expect(SECOND)
        term.expect("> ")
        term.type("/exit")
    finally:
        code = term.close()
    assert code == 0
    (body,) = bodies(gpt)
    assert turns(body) == [
        ("system", "Be brief."),
        ("user", "first turn"),
        ("assistant", FIRST),
        ("user", "second turn"),
    ]
    entries = logs(sandbox)
    assert [e["prompt"] for e in entries] == ["second turn", "first turn"]
    assert entries[0]["cid"] == entries[1]["cid"]
    # chat -c picks the conversation up again, and Ctrl-D ends it.
    term = Terminal(sandbox, "chat", "-c")
    try:
        term.expect("2 earlier turns")
        term.expect("> ")
        os.write(term.master, b"\x04")
    finally:
        code = term.close()
    assert code == 0


def test_ctrl_c_stops_the_answer_not_the_chat(sandbox: Sandbox, sim) -> None:
    long_answer = " ".join(f"word{i}" for i in range(400))
    gpt = sim("openai", Behavior(text=long_answer, tokens_per_second=20))
    sandbox.config(provider("gpt", gpt))
    term = Terminal(sandbox, "chat")
    try:
        term.expect("> ")
        term.type("talk for a long time")
        term.expect("word1 ")  # the answer is streaming
        term.proc.send_signal(signal.SIGINT)
        term.expect("answer stopped")
        term.expect("> ")  # back at the prompt, the session alive
        assert term.proc.poll() is None
        term.type("/exit")
    finally:
        code = term.close()
    assert code == 0
    assert logs(sandbox) == []  # a stopped answer is not recorded


def test_ctrl_c_at_the_prompt_ends_the_chat_with_130(sandbox: Sandbox, sim) -> None:
    sandbox.config(provider("gpt", sim("openai")))
    term = Terminal(sandbox, "chat")
    try:
        term.expect("> ")
        term.proc.send_signal(signal.SIGINT)
        try:
            term.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            # Seen on loaded machines only: a Ctrl-C landing while readline sets the terminal
            # up is lost (an open question, in the closing note); a second one must end it.
            term.proc.send_signal(signal.SIGINT)
    finally:
        code = term.close()
    assert code == 130
