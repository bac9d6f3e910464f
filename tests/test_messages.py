"""Checked messages: one pass validates, notes what the router asks of a request, and tells
when the caller's dicts can go to Chat Completions as they are. Sending them as they are must
give the very body the translation gives."""

from __future__ import annotations

from typing import Any

import pytest

from failover_cli.chat import MAX_PARTS, MAX_STOP, MAX_STOP_CHARS, MAX_TOOLS, Message, TextPart
from failover_cli.messages import Messages, check_messages
from failover_cli.providers.openai import OpenAIProvider
from failover_cli.request import build_request
from failover_cli.types import CompletionRequest, ProviderConfig

CALL = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
PNG = "data:image/png;base64,iVBORw0KGgo="
EXACT: dict[str, list[dict[str, Any]]] = {
    "text": [{"role": "user", "content": "hi"}],
    "names and empty": [
        {"role": "system", "content": "terse"},
        {"role": "user", "content": "", "name": "ann"},
    ],
    "image": [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "what?"},
                {"type": "image_url", "image_url": {"url": PNG, "detail": "low"}},
                {"type": "image_url", "image_url": {"url": "https://x.test/a.png"}},
            ],
        }
    ],
    "tool round": [
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": None, "tool_calls": [CALL]},
        {"role": "tool", "tool_call_id": "call_1", "content": "42"},
        {"role": "assistant", "content": "done", "tool_calls": [{**CALL, "id": "call_2"}]},
        {"role": "tool", "tool_call_id": "call_2", "content": "43"},
    ],
}
TRANSLATED: dict[str, list[dict[str, Any]]] = {
    "unknown field": [{"role": "user", "content": "hi", "cache_control": {"type": "x"}}],
    "text parts only": [{"role": "user", "content": [{"type": "text", "text": "a"}]}],
    "no content": [{"role": "user"}],
    "null content": [{"role": "user", "content": None}],
    "empty with calls": [
        {"role": "assistant", "content": "", "tool_calls": [CALL]},
        {"role": "tool", "tool_call_id": "call_1", "content": "1"},
    ],
    "long id": [
        {"role": "assistant", "content": None, "tool_calls": [{**CALL, "id": "c" * 41}]},
        {"role": "tool", "tool_call_id": "c" * 41, "content": "1"},
    ],
    "long name": [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{**CALL, "function": {"name": "n" * 65, "arguments": "{}"}}],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "1"},
    ],
    "object arguments": [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{**CALL, "function": {"name": "f", "arguments": {"a": 1}}}],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "1"},
    ],
    "call without type": [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "call_1", "function": {"name": "f", "arguments": "{}"}}],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "1"},
    ],
    "tool message name": [
        {"role": "assistant", "content": None, "tool_calls": [CALL]},
        {"role": "tool", "tool_call_id": "call_1", "content": "1", "name": "f"},
    ],
    "image url as string": [
        {
            "role": "user",
            "content": [{"type": "text", "text": "a"}, {"type": "image_url", "image_url": PNG}],
        }
    ],
    "unnormalised data url": [
        {
            "role": "user",
            "content": [{"type": "image_url", "image_url": {"url": "data:IMAGE/PNG;base64, AAAA"}}],
        }
    ],
    "blank detail": [
        {
            "role": "user",
            "content": [{"type": "image_url", "image_url": {"url": PNG, "detail": ""}}],
        }
    ],
    "typed message": [Message("user", (TextPart("hi"),))],  # type: ignore[list-item]
}


def provider(base_url: str) -> OpenAIProvider:
    return OpenAIProvider(
        ProviderConfig(name="gpt", kind="openai", base_url=base_url, model="m", api_key_env="K")
    )


def translated_body(p: OpenAIProvider, request: CompletionRequest) -> dict[str, Any]:
    """The body with the messages as typed values, which are always translated."""
    typed = CompletionRequest(**{**_fields(request), "messages": tuple(request.messages)})
    return p.body(typed, stream=False)


def _fields(request: CompletionRequest) -> dict[str, Any]:
    return {f: getattr(request, f) for f in request.__dataclass_fields__}


@pytest.mark.parametrize("messages", EXACT.values(), ids=EXACT.keys())
def test_dicts_chat_completions_takes_are_sent_as_they_are(messages: list[dict[str, Any]]):
    checked = check_messages(messages)
    assert checked.wire is messages
    for base_url in ("https://api.openai.com", "http://127.0.0.1:9"):
        p = provider(base_url)
        for request in (
            build_request(messages=messages, max_tokens=5),
            build_request("and now?", messages=messages, system="be brief", max_tokens=5),
        ):
            sent = p.body(request, stream=False)
            assert type(request.messages) is Messages and request.messages._typed is None
            assert sent == translated_body(p, request)


@pytest.mark.parametrize("messages", TRANSLATED.values(), ids=TRANSLATED.keys())
def test_dicts_that_need_translating_are_translated(messages: list[Any]):
    assert check_messages(messages).wire is None
    request = build_request(messages=messages, max_tokens=5)
    p = provider("https://api.openai.com")
    assert p.body(request, stream=False) == translated_body(p, request)


def test_a_developer_message_is_sent_as_system_to_a_compatible_server():
    messages = [{"role": "developer", "content": "terse"}, {"role": "user", "content": "hi"}]
    request = build_request(messages=messages, max_tokens=5)
    assert request.messages.developer  # type: ignore[attr-defined]
    official = provider("https://api.openai.com").body(request, stream=False)
    compatible = provider("http://127.0.0.1:9").body(request, stream=False)
    assert official["messages"][0]["role"] == "developer"
    assert compatible["messages"][0] == {"role": "system", "content": "terse"}


def test_what_the_router_asks_is_noted_in_the_one_pass():
    messages = EXACT["image"] + [{"role": "assistant", "content": "ok"}]
    checked = check_messages(messages)
    assert checked.url_images and checked.image_types == {"image/png"}
    assert not checked.uses_tools
    assert checked.text_chars == len("what?") + len("ok")
    typed = CompletionRequest(messages=tuple(checked))
    lazy = CompletionRequest(messages=checked)
    for name in ("uses_tools", "has_images", "url_images", "image_types"):
        assert getattr(typed, name) == getattr(lazy, name), name
    assert typed.text_chars() == lazy.text_chars()
    tools = check_messages(EXACT["tool round"])
    assert tools.uses_tools and not tools.has_images
    assert CompletionRequest(messages=tuple(tools)).uses_tools


def test_typed_values_are_built_once_on_first_use_and_compare_as_a_tuple():
    checked = check_messages(EXACT["tool round"])
    assert checked._typed is None
    first = checked[1]
    assert checked._typed is not None and checked[1] is first
    assert first.tool_calls[0].id == "call_1" and len(checked) == 5
    assert checked == tuple(checked) == check_messages(EXACT["tool round"])


def test_dicts_changed_while_a_request_runs_give_a_clear_error():
    messages = [{"role": "user", "content": "hi"}]
    checked = check_messages(messages)
    messages[0] = {"content": "no role"}
    with pytest.raises(ValueError, match="changed while the request ran"):
        list(checked)


@pytest.mark.parametrize("role", [["user"], {"user": 1}, {"user"}])
def test_an_unhashable_role_is_a_value_error_naming_the_field(role):
    with pytest.raises(ValueError, match=r"messages\[0\]\.role"):
        check_messages([{"role": role, "content": "hi"}])


def _tool(name: str) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name, "parameters": {"type": "object"}}}


def test_counts_and_lengths_a_caller_sends_are_bounded():
    """Hostile input is bounded where it is parsed, for library users and the gateway alike:
    the number of tools, of parts in one message, of stop sequences and their length."""
    user = [{"role": "user", "content": "hi"}]
    build_request(messages=user, tools=[_tool(f"t{i}") for i in range(MAX_TOOLS)])
    with pytest.raises(ValueError, match=rf"^tools: at most {MAX_TOOLS} tools"):
        build_request(messages=user, tools=[_tool(f"t{i}") for i in range(MAX_TOOLS + 1)])
    parts = [{"type": "text", "text": "x"}] * MAX_PARTS
    build_request(messages=[{"role": "user", "content": parts}])
    with pytest.raises(ValueError, match=rf"^messages\[0\]\.content: at most {MAX_PARTS} parts"):
        build_request(messages=[{"role": "user", "content": [*parts, parts[0]]}])
    build_request(messages=user, stop=["x" * MAX_STOP_CHARS] * MAX_STOP)
    with pytest.raises(ValueError, match=rf"^stop: at most {MAX_STOP} stop sequences"):
        build_request(messages=user, stop=["x"] * (MAX_STOP + 1))
    with pytest.raises(ValueError, match=r"^stop\[1\]: longer than"):
        build_request(messages=user, stop=["x", "x" * (MAX_STOP_CHARS + 1)])


ASKED = {"role": "assistant", "content": None, "tool_calls": [CALL]}
REFUSED: dict[str, tuple[dict[str, Any], str]] = {
    "tool defined twice": (
        {
            "messages": [{"role": "user", "content": "hi"}],
            "tools": [_tool("a"), _tool("b"), _tool("a")],
        },
        r"^tools\[2\]\.function\.name: 'a' is defined twice",
    ),
    "image from the assistant": (
        {
            "messages": [
                {
                    "role": "assistant",
                    "content": [
                        {"type": "image_url", "image_url": {"url": "https://x.test/a.png"}}
                    ],
                }
            ]
        },
        r"^messages\[0\]\.content\[0\]: images are taken in user messages, not assistant",
    ),
    "image by another scheme": (
        {
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "image_url", "image_url": {"url": "ftp://x.test/a.png"}}],
                }
            ]
        },
        r"^messages\[0\]\.content\[0\]\.image_url\.url: must be an http\(s\) URL",
    ),
    "image by an empty url": (
        {
            "messages": [
                {"role": "user", "content": [{"type": "image_url", "image_url": {"url": ""}}]}
            ]
        },
        r"^messages\[0\]\.content\[0\]\.image_url\.url: must not be empty",
    ),
    "a text turn before the tool result": (
        {"messages": [ASKED, {"role": "user", "content": "and?"}]},
        r"^messages\[1\]: the tool calls of messages\[0\] \(call_1\) need a tool message",
    ),
    "a tool result without an id": (
        {"messages": [ASKED, {"role": "tool", "tool_call_id": 7, "content": "1"}]},
        r"^messages\[1\]\.tool_call_id: must be a string, not int",
    ),
    "a tool result with an empty id": (
        {"messages": [ASKED, {"role": "tool", "tool_call_id": "", "content": "1"}]},
        r"^messages\[1\]\.tool_call_id: must not be empty",
    ),
    "a call that is not an object": (
        {"messages": [{"role": "assistant", "content": None, "tool_calls": ["call_1"]}]},
        r"^messages\[0\]\.tool_calls\[0\]: must be an object",
    ),
}


@pytest.mark.parametrize("arguments,error", REFUSED.values(), ids=REFUSED.keys())
def test_each_refusal_names_the_field_at_fault(arguments: dict[str, Any], error: str):
    with pytest.raises(ValueError, match=error):
        build_request(**arguments)


def test_a_text_turn_of_every_role_but_tool_needs_no_more_checking():
    """The common turn ({role, content: text}) is checked on a short path: it must still count
    its text, note a developer message, and leave the dicts sendable as they are."""
    messages = [
        {"role": "developer", "content": "terse"},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": ""},
    ]
    checked = check_messages(messages)
    assert (checked.text_chars, checked.developer, checked.uses_tools) == (7, True, False)
    assert checked.wire is messages
    url = {"type": "image_url", "image_url": {"url": "http://x.test/a.png"}}
    images = check_messages([{"role": "user", "content": [url]}])
    assert (images.url_images, images.image_types, images.wire is not None) == (
        True,
        frozenset(),
        True,
    )


@pytest.mark.parametrize(
    "assistant",
    [
        {"role": "assistant", "content": [{"type": "refusal", "refusal": "I can't help."}]},
        {"role": "assistant", "content": None, "refusal": "I can't help."},
    ],
    ids=["refusal part", "refusal field"],
)
def test_an_assistant_refusal_sent_back_is_its_text(assistant: dict[str, Any]):
    """An earlier refusal in the history, as the OpenAI SDK types let a client send it
    (a ``refusal`` part, or the message's ``refusal`` with no content), is the assistant's
    text to every provider."""
    messages = [
        {"role": "user", "content": "Something harmful."},
        assistant,
        {"role": "user", "content": "Then something else."},
    ]
    check_messages(messages)
    typed = tuple(build_request(messages=messages, max_tokens=5).messages)
    assert typed[1].role == "assistant" and typed[1].content == (TextPart("I can't help."),)


def test_a_refusal_part_outside_an_assistant_turn_is_refused():
    with pytest.raises(ValueError, match=r"messages\[0\].content\[0\]"):
        check_messages([{"role": "user", "content": [{"type": "refusal", "refusal": "no"}]}])
