"""``failover ask`` with attachments (-a), structured output (--schema) and per-call models
(-m): the real executable against loopback simulators, and the reading of its options."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import Sandbox, provider
from typer.main import get_command
from typer.testing import CliRunner

from failover_cli import attach
from failover_cli.cli import ask, fast
from failover_cli.cli.ask import run_ask
from failover_cli.cli.ask_input import model_kind
from failover_cli.cli.commands import app
from failover_cli.cli.exits import BadOption, UnknownProvider
from failover_cli.sim import Behavior

ANSWER = "A small red square."
FAILING = Behavior(failure_rate=1.0, failure_status=500)
# A real 1x1 PNG; only its first bytes matter to failover.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
)
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01" + b"\x00" * 32
GIF = b"GIF89a\x01\x00\x01\x00\x80\x00\x00" + b"\x00" * 16
WEBP = b"RIFF\x24\x00\x00\x00WEBPVP8 " + b"\x00" * 32
SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
}


def one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    """The single ``failover: error: ...`` line of a usage error (exit 2), nothing on stdout."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("failover: error: "), proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    return lines[0]


def last_body(s) -> dict[str, Any]:
    """The JSON body of the last completion request a simulator received."""
    return [r for r in s.requests if r.method == "POST"][-1].json


def user_parts(s) -> list[dict[str, Any]]:
    """The content parts of the last user message sent to an OpenAI simulator."""
    content = last_body(s)["messages"][-1]["content"]
    if isinstance(content, str):  # one text part may be sent as a plain string
        return [{"type": "text", "text": content}]
    return content


def image_urls(parts: list[dict[str, Any]]) -> list[str]:
    out = []
    for p in parts:
        if p.get("type") == "image_url":
            image = p["image_url"]
            out.append(image["url"] if isinstance(image, dict) else image)
    return out


def texts(parts: list[dict[str, Any]]) -> list[str]:
    return [p["text"] for p in parts if p.get("type") == "text"]


# --- attachments ----------------------------------------------------------------------------------


def test_an_image_reaches_the_provider_as_an_image_part(sandbox: Sandbox, sim) -> None:
    gpt = sim("openai", Behavior(text=ANSWER))
    sandbox.config(provider("gpt", gpt))
    (sandbox.root / "shot.dat").write_bytes(PNG)  # told by its content, not its name
    proc = sandbox.run("ask", "-a", "shot.dat", "What is this?")
    assert (proc.returncode, proc.stdout) == (0, ANSWER + "\n"), proc.stderr
    parts = user_parts(gpt)
    assert image_urls(parts) == ["data:image/png;base64," + base64.b64encode(PNG).decode()]
    assert texts(parts) == ["What is this?"]  # the prompt, after the image
    assert parts[-1] == {"type": "text", "text": "What is this?"}


def test_a_text_file_is_inlined_under_its_name(sandbox: Sandbox, sim) -> None:
    gpt = sim("openai", Behavior(text=ANSWER))
    sandbox.config(provider("gpt", gpt))
    notes = sandbox.root / "notes"
    notes.mkdir()
    (notes / "todo.md").write_text("# Todo\n```sh\nmake test\n```\n", encoding="utf-8")
    proc = sandbox.run("ask", "-a", "notes/todo.md", "Summarise it")
    assert proc.returncode == 0, proc.stderr
    parts = user_parts(gpt)
    assert image_urls(parts) == []
    # The fence is longer than the backtick runs inside, so the file cannot close it.
    assert texts(parts) == [
        "notes/todo.md\n````\n# Todo\n```sh\nmake test\n```\n````\n\nSummarise it"
    ]


def test_several_attachments_keep_their_order_and_images_are_named(sandbox: Sandbox, sim) -> None:
    gpt = sim("openai", Behavior(text=ANSWER))
    sandbox.config(provider("gpt", gpt))
    (sandbox.root / "a.jpg").write_bytes(JPEG)
    (sandbox.root / "b.txt").write_text("bee", encoding="utf-8")
    (sandbox.root / "c.webp").write_bytes(WEBP)
    proc = sandbox.run("ask", "--json", "-a", "a.jpg", "--attach", "b.txt", "-a", "c.webp", "Q")
    assert proc.returncode == 0, proc.stderr
    parts = user_parts(gpt)
    kinds = [p["type"] for p in parts]
    assert kinds == ["text", "image_url", "text", "image_url", "text"]
    assert texts(parts) == ["a.jpg:", "b.txt\n```\nbee\n```\n\nc.webp:", "Q"]
    assert [u.split(";")[0] for u in image_urls(parts)] == ["data:image/jpeg", "data:image/webp"]
    data = json.loads(proc.stdout)
    assert data["attachments"] == [
        {"name": "a.jpg", "type": "image/jpeg", "bytes": len(JPEG)},
        {"name": "b.txt", "type": "text/plain", "bytes": 3},
        {"name": "c.webp", "type": "image/webp", "bytes": len(WEBP)},
    ]
    assert data["message"] == {"role": "assistant", "content": ANSWER}
    assert "finish_reason" in data


def test_dash_attaches_stdin_and_the_prompt_stays_the_argument(sandbox: Sandbox, sim) -> None:
    gpt = sim("openai", Behavior(text=ANSWER))
    sandbox.config(provider("gpt", gpt))
    proc = sandbox.run("ask", "-a", "-", "Describe it", input=GIF)
    assert proc.returncode == 0, proc.stderr
    parts = user_parts(gpt)
    assert image_urls(parts) == ["data:image/gif;base64," + base64.b64encode(GIF).decode()]
    assert texts(parts) == ["Describe it"]  # stdin was not appended to the prompt
    text = sandbox.run("ask", "-a", "-", "Fix the typo", input=b"helo world\n")
    assert text.returncode == 0, text.stderr
    assert texts(user_parts(gpt)) == ["stdin\n```\nhelo world\n```\n\nFix the typo"]


@pytest.mark.parametrize("args", [["-a", "-"], ["-a", "-", "-"], ["-a", "-", "-a", "-", "q"]])
def test_stdin_cannot_hold_both_the_attachment_and_the_prompt(
    sandbox: Sandbox, sim, args: list[str]
) -> None:
    gpt = sim("openai", Behavior(text=ANSWER))
    sandbox.config(provider("gpt", gpt))
    line = one_error_line(sandbox.run("ask", *args, input=PNG))
    assert "standard input" in line and "-a -" in line
    assert gpt.count == 0


def test_an_empty_stdin_attachment_is_refused(sandbox: Sandbox, sim) -> None:
    gpt = sim("openai", Behavior(text=ANSWER))
    sandbox.config(provider("gpt", gpt))
    line = one_error_line(sandbox.run("ask", "-a", "-", "q"))  # stdin is /dev/null
    assert "cannot attach stdin: nothing was piped" in line
    assert gpt.count == 0


@pytest.mark.parametrize(
    ("name", "data", "expected"),
    [
        ("blob.bin", b"\x00\x01\x02\xfe\xff" * 20, "not text (bad UTF-8 at byte 3) nor an image"),
        ("nul.txt", b"text with a \x00 inside", "not text (a NUL byte at offset 12)"),
        ("paper.pdf", b"%PDF-1.7\n\xe2\xe3\xcf\xd3\n", "it is a PDF document"),
        ("pic.bmp", b"BM\x36\x00\x00\x00\x00\x00\x00\x00" + b"\xff" * 20, "it is a BMP image"),
        ("photo.png", b"version https://git-lfs.github.com/spec/v1\n", "named like an image"),
    ],
)
def test_a_file_that_is_neither_text_nor_a_known_image_is_a_usage_error(
    sandbox: Sandbox, sim, name: str, data: bytes, expected: str
) -> None:
    gpt = sim("openai", Behavior(text=ANSWER))
    sandbox.config(provider("gpt", gpt))
    (sandbox.root / name).write_bytes(data)
    line = one_error_line(sandbox.run("ask", "-a", name, "explain"))
    assert f"cannot attach {name}: " in line and expected in line, line
    assert "PNG, JPEG, GIF" in line
    assert gpt.count == 0


def test_directories_fifos_devices_and_missing_files_are_refused(sandbox: Sandbox, sim) -> None:
    gpt = sim("openai", Behavior(text=ANSWER))
    sandbox.config(provider("gpt", gpt))
    (sandbox.root / "dir").mkdir()
    os.mkfifo(sandbox.root / "fifo")  # opening it would block: it must not be opened
    (sandbox.root / "link").symlink_to(sandbox.root / "fifo")
    cases = {
        "dir": "cannot attach dir: a directory, not a file",
        "fifo": "cannot attach fifo: a FIFO, not a file (to attach what a command writes, "
        "pipe it to '-a -')",
        "link": "cannot attach link: a FIFO, not a file",
        "/dev/zero": "cannot attach /dev/zero: a character device, not a file",
        "missing.png": "cannot attach missing.png: no such file",
    }
    for path, expected in cases.items():
        line = one_error_line(sandbox.run("ask", "-a", path, "q", timeout=10))
        assert expected in line, line
    assert gpt.count == 0


def test_a_symbolic_link_to_a_file_is_followed(sandbox: Sandbox, sim) -> None:
    gpt = sim("openai", Behavior(text=ANSWER))
    sandbox.config(provider("gpt", gpt))
    (sandbox.root / "real.png").write_bytes(PNG)
    (sandbox.root / "latest").symlink_to("real.png")
    assert sandbox.run("ask", "-a", "latest", "q").returncode == 0
    assert image_urls(user_parts(gpt)) == [
        "data:image/png;base64," + base64.b64encode(PNG).decode()
    ]


def test_attachments_over_their_bound_are_refused(sandbox: Sandbox, sim) -> None:
    gpt = sim("openai", Behavior(text=ANSWER))
    sandbox.config(provider("gpt", gpt))
    big = sandbox.root / "big.png"
    big.write_bytes(PNG[:8] + b"\x00" * (20 << 20))  # 20 MiB + 8 bytes
    assert "larger than 20 MiB" in one_error_line(sandbox.run("ask", "-a", "big.png", "q"))
    text = sandbox.root / "big.txt"
    text.write_bytes(b"y\n" * ((16 << 20) // 2 + 1))  # 16 MiB + 2 bytes
    line = one_error_line(sandbox.run("ask", "-a", "big.txt", "q"))
    assert "a text file larger than 16 MiB" in line
    assert gpt.count == 0


def test_plain_piped_stdin_is_still_appended_with_an_attachment(sandbox: Sandbox, sim) -> None:
    gpt = sim("openai", Behavior(text=ANSWER))
    sandbox.config(provider("gpt", gpt))
    (sandbox.root / "x.png").write_bytes(PNG)
    proc = sandbox.run("ask", "-a", "x.png", "review", input=b"the diff")
    assert proc.returncode == 0, proc.stderr
    assert texts(user_parts(gpt)) == ["review\n\nthe diff"]


# --- structured output ----------------------------------------------------------------------------


def test_an_inline_schema_is_sent_and_the_answer_printed_as_json(sandbox: Sandbox, sim) -> None:
    gpt = sim("openai", Behavior(text=ANSWER))
    sandbox.config(provider("gpt", gpt))
    proc = sandbox.run("ask", "--schema", json.dumps(SCHEMA), "Invent a person")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("\n") == 1  # piped: one line of JSON
    value = json.loads(proc.stdout)
    assert isinstance(value["name"], str) and isinstance(value["age"], int)
    fmt = last_body(gpt)["response_format"]
    assert fmt["type"] == "json_schema"
    assert fmt["json_schema"]["schema"] == SCHEMA
    assert fmt["json_schema"]["name"] == "response"


def test_a_schema_file_names_the_schema_and_json_mode_carries_the_parsed_answer(
    sandbox: Sandbox, sim
) -> None:
    gpt = sim("openai", Behavior(text=ANSWER))
    sandbox.config(provider("gpt", gpt))
    (sandbox.root / "person.json").write_text(json.dumps(SCHEMA), encoding="utf-8")
    proc = sandbox.run("ask", "--schema", "person.json", "--no-stream", "Invent a person")
    assert proc.returncode == 0, proc.stderr
    value = json.loads(proc.stdout)
    assert set(value) == {"name", "age"}
    assert last_body(gpt)["response_format"]["json_schema"] == {
        "name": "person",
        "schema": SCHEMA,
    }
    data = json.loads(sandbox.run("ask", "--json", "--schema", "person.json", "hi").stdout)
    assert data["parsed"] == json.loads(data["text"]) and set(data["parsed"]) == {"name", "age"}


def test_an_answer_that_is_not_json_is_printed_and_exits_1(sandbox: Sandbox, sim) -> None:
    gpt = sim("openai", Behavior(text=ANSWER, json_text="Sorry, no JSON today"))
    sandbox.config(provider("gpt", gpt))
    proc = sandbox.run("ask", "--schema", '{"type": "object"}', "q")
    assert proc.returncode == 1
    assert proc.stdout == "Sorry, no JSON today\n"
    assert "gpt answered, but not with JSON" in proc.stderr
    data = json.loads(sandbox.run("ask", "--json", "--schema", '{"type": "object"}', "q").stdout)
    assert data["parsed"] is None and data["text"] == "Sorry, no JSON today"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('{"type": "object",', "not valid JSON (Expecting property name"),
        ("[1, 2]", "a JSON schema must be an object ({...}), not an array"),
        ('{"maximum": NaN}', "not valid JSON (NaN is not JSON)"),
        ("nope.json", "cannot read the schema nope.json: no such file"),
        ("list.json", "list.json: a JSON schema must be an object ({...}), not an array"),
        ("bad.json", "bad.json: not valid JSON (Expecting value at line 1, column 1)"),
        (".", "cannot read the schema .: a directory, not a file"),
    ],
)
def test_an_unusable_schema_is_a_one_line_usage_error(
    sandbox: Sandbox, sim, value: str, expected: str
) -> None:
    gpt = sim("openai", Behavior(text=ANSWER))
    sandbox.config(provider("gpt", gpt))
    (sandbox.root / "list.json").write_text("[]", encoding="utf-8")
    (sandbox.root / "bad.json").write_text("oops", encoding="utf-8")
    line = one_error_line(sandbox.run("ask", "--schema", value, "q"))
    assert "Invalid value for --schema" in line and expected in line, line
    assert gpt.count == 0


# --- per-call models --------------------------------------------------------------------------


def test_model_with_one_provider_changes_the_model_sent(sandbox: Sandbox, sim) -> None:
    gpt = sim("openai", Behavior(text=ANSWER))
    ollama = sim("ollama", Behavior(text=ANSWER))
    sandbox.config(provider("gpt", gpt), provider("local", ollama))
    assert sandbox.run("ask", "hi").returncode == 0
    assert last_body(gpt)["model"] == "gpt-model"  # the configured one, without -m
    proc = sandbox.run("ask", "-p", "local", "-m", "llama3.2:1b", "hi")  # any name, with one -p
    assert proc.returncode == 0, proc.stderr
    assert last_body(ollama)["model"] == "llama3.2:1b"
    proc = sandbox.run("ask", "-p", "gpt", "--model", "my-finetune", "--json", "hi")
    assert proc.returncode == 0, proc.stderr
    assert last_body(gpt)["model"] == "my-finetune"


def test_name_model_pairs_and_bare_models_by_kind(sandbox: Sandbox, sim) -> None:
    claude = sim("anthropic", FAILING)
    gpt = sim("openai", Behavior(text=ANSWER))
    sandbox.config(provider("claude", claude), provider("gpt", gpt))
    proc = sandbox.run("ask", "-v", "-m", "claude=claude-haiku-4-5", "-m", "gpt=gpt-4o-mini", "hi")
    assert proc.returncode == 0, proc.stderr
    assert last_body(claude)["model"] == "claude-haiku-4-5"
    assert last_body(gpt)["model"] == "gpt-4o-mini"
    assert "models for this call: claude=claude-haiku-4-5, gpt=gpt-4o-mini" in proc.stderr
    # A bare model goes to the providers of its kind only; the others keep theirs.
    assert sandbox.run("ask", "-m", "o4-mini", "hi").returncode == 0
    assert last_body(claude)["model"] == "claude-model"
    assert last_body(gpt)["model"] == "o4-mini"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["-m", "nope=x"], "no provider named 'nope'"),
        (["-m", "gtp=x"], "no provider named 'gtp' (did you mean 'gpt'?)"),
        (["-m", "llama3"], "cannot tell which provider 'llama3' is for"),
        (["-m", "gemini-2.5-pro"], "'gemini-2.5-pro' is for a gemini provider, but the chain"),
        (["-p", "gpt", "-p", "claude", "-m", "gemini-x"], "the providers given with --provider"),
        (["-m", "gpt="], "names no model"),
        (["-m", "gpt=a", "-m", "gpt-b"], "two models for gpt: 'a' and 'gpt-b'"),
    ],
)
def test_bad_models_are_one_line_usage_errors(
    sandbox: Sandbox, sim, args: list[str], expected: str
) -> None:
    claude = sim("anthropic", Behavior(text=ANSWER))
    gpt = sim("openai", Behavior(text=ANSWER))
    sandbox.config(provider("claude", claude), provider("gpt", gpt))
    line = one_error_line(sandbox.run("ask", *args, "q", input=b"piped"))
    assert "Invalid value for --model" in line and expected in line, line
    assert "(see 'failover ask --help')" in line
    assert claude.count == gpt.count == 0


def test_the_bare_model_rule() -> None:
    assert [model_kind(m) for m in ("claude-opus-4-5", "Claude-3", "gpt-4o", "chatgpt-4o")] == [
        "anthropic", "anthropic", "openai", "openai",
    ]  # fmt: skip
    assert [model_kind(m) for m in ("o1", "o3-mini", "o4-mini", "gemini-2.5-flash")] == [
        "openai", "openai", "openai", "gemini",
    ]  # fmt: skip
    assert [model_kind(m) for m in ("llama3", "ollama", "o", "mistral", "")] == [None] * 5


# --- the option table, with and without Typer --------------------------------------------------

ASK = get_command(app).commands["ask"]  # type: ignore[attr-defined]
NEW = [
    ["-a", "x.png", "--attach", "y.txt", "-a", "-", "q"],
    ["--schema", '{"type": "object"}', "q"],
    ["--schema=s.json", "-m", "claude=m", "--model", "gpt-4o", "--model=o3", "q"],
    ["-p", "gpt", "-m", "any-model", "-a", "--json", "q"],  # a value may look like an option
]


def typer_reading(monkeypatch, args: list[str]) -> dict | None:
    seen: list[dict] = []
    monkeypatch.setattr(ask, "run_ask", lambda **kw: seen.append(kw))
    result = CliRunner().invoke(app, ["ask", *args], env={"FAILOVER_STATE": ""})
    if result.exit_code != 0:
        return None
    (kwargs,) = seen
    return {k: list(v) if isinstance(v, tuple) else v for k, v in kwargs.items()}


@pytest.mark.parametrize("args", NEW, ids=" ".join)
def test_the_fast_path_reads_the_new_options_as_typer_does(monkeypatch, args: list[str]) -> None:
    ours = fast.parse(args, {"FAILOVER_STATE": ""})
    assert ours is not None
    assert ours == typer_reading(monkeypatch, args)


@pytest.mark.parametrize("args", [["-afile", "q"], ["-m=x", "q"], ["q", "--schema"], ["-am", "x"]])
def test_unusual_spellings_of_the_new_options_go_to_typer(args: list[str]) -> None:
    assert fast.parse(args, {}) is None


def test_the_new_options_are_documented() -> None:
    opts = {o: p for p in ASK.params for o in p.opts}
    assert opts["-a"] is opts["--attach"] and opts["-a"].multiple
    assert opts["-m"] is opts["--model"] and opts["-m"].multiple
    assert not opts["--schema"].multiple
    help_text = CliRunner().invoke(app, ["ask", "--help"], env={"COLUMNS": "200"}).output
    text = " ".join(help_text.split())
    for phrase in (
        "Attachments",
        "told by its content",
        "-a -",
        "Structured output",
        "one line when piped",
        "claude* anthropic; gpt*, chatgpt*, o1*, o3*, o4* openai; gemini* gemini",
        "NAME=MODEL",
    ):
        assert phrase in text, phrase


def test_a_bad_option_found_on_the_fast_path_is_left_to_typer() -> None:
    assert issubclass(UnknownProvider, BadOption)

    def raises() -> None:
        raise BadOption("cannot tell", "--model")

    from failover_cli.cli.exits import guarded

    with pytest.raises(BadOption):
        guarded(raises)


def test_a_plain_ask_does_not_import_the_attachment_code(sandbox: Sandbox, sim) -> None:
    sandbox.config(provider("gpt", sim("openai", Behavior(text=ANSWER))))
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "failover_cli", "ask", "hi"],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, env=sandbox.env, timeout=30,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    imported = {ln.split("|")[-1].strip() for ln in proc.stderr.splitlines() if "|" in ln}
    assert "failover_cli.router" in imported  # the measurement works
    assert "failover_cli.attach" not in imported
    assert "failover_cli.cli.conversation" in imported
    assert "failover_cli.cli.logs" not in imported  # the `failover logs` listing code


# --- the pieces ---------------------------------------------------------------------------------


def test_images_are_told_by_their_first_bytes() -> None:
    assert [attach.image_type(d) for d in (PNG, JPEG, GIF, WEBP)] == [
        "image/png", "image/jpeg", "image/gif", "image/webp",
    ]  # fmt: skip
    for data in (b"", b"\x89PN", b"RIFF\x00\x00\x00\x00WAVE", b"GIF90a", b"hello"):
        assert attach.image_type(data) is None


def test_the_text_framing() -> None:
    assert attach.fenced("a.py", "x = 1\n") == "a.py\n```\nx = 1\n```"
    assert attach.fenced("b", "no newline") == "b\n```\nno newline\n```"
    assert attach.fenced("c.md", "`````") == "c.md\n``````\n`````\n``````"
    text = attach.classify("bom.txt", b"\xef\xbb\xbfhi", image_limit=10, text_limit=10)
    assert text.parts() == [{"type": "text", "text": "bom.txt\n```\nhi\n```"}]


def test_classify_bounds_each_kind_separately() -> None:
    with pytest.raises(attach.AttachmentError, match="an image larger than 10 bytes"):
        attach.classify("p", PNG, image_limit=10, text_limit=1000)
    with pytest.raises(attach.AttachmentError, match="a text file larger than 4 bytes"):
        attach.classify("t", b"hello", image_limit=1000, text_limit=4)
    assert attach.classify("t", b"hell", image_limit=1000, text_limit=4).media_type == "text/plain"


def test_together_attachments_are_bounded(tmp_path: Path) -> None:
    for name in ("a", "b"):
        (tmp_path / name).write_bytes(b"x" * 600)
    paths = [str(tmp_path / "a"), str(tmp_path / "b")]
    assert len(attach.read_attachments(paths, None, total_limit=1200)) == 2
    with pytest.raises(attach.AttachmentError, match="together pass 1000 bytes"):
        attach.read_attachments(paths, None, total_limit=1000)


def test_a_json_answer_may_come_in_a_code_fence() -> None:
    assert attach.parse_answer('{"a": 1}') == {"a": 1}
    assert attach.parse_answer('```json\n{"a": 1}\n```\n') == {"a": 1}
    with pytest.raises(ValueError, match="Expecting value"):
        attach.parse_answer("not json")
    with pytest.raises(ValueError, match="NaN is not JSON"):
        attach.parse_answer("NaN")


def test_what_ask_hands_the_router(tmp_path: Path, monkeypatch, capsys) -> None:
    """The library contract, without the network: one user message (attachments, then the
    prompt), the response format and the models, all accepted by build_request."""
    from failover_cli.chat import ImagePart, TextPart
    from failover_cli.request import build_request
    from failover_cli.router import FailoverRouter

    config = tmp_path / "providers.yaml"
    config.write_text(
        "providers:\n"
        "  - {name: claude, kind: anthropic, model: claude-x, api_key_env: K}\n"
        "  - {name: gpt, kind: openai, model: gpt-x, api_key_env: K}\n",
        encoding="utf-8",
    )
    (tmp_path / "a.png").write_bytes(PNG)
    (tmp_path / "b.txt").write_text("bee\n", encoding="utf-8")
    seen: list[dict[str, Any]] = []

    async def route(self, prompt=None, **kwargs):
        seen.append({"prompt": prompt, **kwargs})
        raise KeyboardInterrupt  # stop here: nothing is sent

    monkeypatch.setattr(FailoverRouter, "route", route)
    monkeypatch.setattr("sys.stdin", None)
    with pytest.raises(SystemExit):
        run_ask(
            "Compare",
            attach=[str(tmp_path / "a.png"), str(tmp_path / "b.txt")],
            schema='{"type": "object"}',
            model=["gpt-4o", "claude=claude-y"],
            no_stream=True,
            config=str(config),
            state=str(tmp_path / "state.json"),
        )
    (kwargs,) = seen
    assert kwargs["prompt"] is None
    assert kwargs["models"] == {"gpt": "gpt-4o", "claude": "claude-y"}
    assert kwargs["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "response", "schema": {"type": "object"}},
    }
    routing = ("models", "timeout", "max_wait", "only")
    request = build_request(**{k: v for k, v in kwargs.items() if k not in routing})
    (message,) = request.messages
    assert message.role == "user"
    assert [type(p) for p in message.content] == [TextPart, ImagePart, TextPart]
    assert message.content[0] == TextPart(f"{tmp_path / 'a.png'}:")
    assert message.images[0].media_type == "image/png"
    assert base64.b64decode(message.images[0].data or "") == PNG
    assert message.content[2] == TextPart(f"{tmp_path / 'b.txt'}\n```\nbee\n```\n\nCompare")
    assert request.response_format is not None and request.response_format.type == "json_schema"
    assert "interrupted" in capsys.readouterr().err


def test_a_json_answer_is_indented_on_a_terminal(sandbox: Sandbox, sim) -> None:
    from test_cli_tty import SGR, run_in_pty

    gpt = sim("openai", Behavior(text=ANSWER, json_text='{"name": "Ada", "tags": ["x"]}'))
    sandbox.config(provider("gpt", gpt))
    code, out = run_in_pty(sandbox, "ask", "--schema", '{"type": "object"}', "q")
    assert code == 0, out
    assert SGR.search(out)  # highlighted
    plain = SGR.sub(b"", out).decode()
    assert '{\n  "name": "Ada",\n  "tags": [\n    "x"\n  ]\n}' in plain
    code, out = run_in_pty(
        sandbox, "ask", "--schema", '{"type": "object"}', "q", env={"NO_COLOR": "1"}
    )
    assert code == 0 and not SGR.search(out)
    assert '{\n  "name": "Ada",\n  "tags": [\n    "x"\n  ]\n}' in out.decode()
