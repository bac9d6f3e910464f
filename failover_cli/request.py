"""Build a :class:`~failover_cli.types.CompletionRequest` from what a caller passes: plain
``prompt=``/``system=``, or OpenAI Chat Completions-shaped messages, tools, tool choice and
response format, validated once (a ValueError names the message index and field)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from .chat import (
    parse_response_format,
    parse_stop,
    parse_tool_choice,
    parse_tools,
)
from .messages import check_messages
from .types import CompletionRequest


def build_request(
    prompt: str | None = None,
    *,
    messages: Sequence[Any] | None = None,
    max_tokens: int = 1024,
    system: str | None = None,
    temperature: float | None = None,
    top_p: float | None = None,
    stop: str | Sequence[str] | None = None,
    tools: Sequence[Any] | None = None,
    tool_choice: Any = None,
    response_format: Any = None,
) -> CompletionRequest:
    """The request for these arguments. ``prompt`` (if any) is the last user turn after
    ``messages``."""
    if prompt is not None and not isinstance(prompt, str):
        raise ValueError(f"prompt: must be a string, not {type(prompt).__name__}")
    if system is not None and not isinstance(system, str):
        raise ValueError(f"system: must be a string, not {type(system).__name__}")
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise ValueError(f"max_tokens: must be a whole number >= 1, not {max_tokens!r}")
    for name, value in (("temperature", temperature), ("top_p", top_p)):
        if value is not None and (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or (type(value) is float and not math.isfinite(value))  # an int is finite
            or value < 0
        ):
            shown = "a negative integer" if type(value) is int else repr(value)[:40]
            raise ValueError(f"{name}: must be a finite number >= 0, not {shown}")
    if messages is None and tools is None and response_format is None and not stop:
        if tool_choice is not None:
            raise ValueError("tool_choice: given without tools")
        return CompletionRequest(prompt or "", max_tokens, system, temperature, top_p=top_p)
    parsed_tools = parse_tools(tools)
    choice = parse_tool_choice(tool_choice, parsed_tools)
    if choice is not None and choice != "none" and not parsed_tools:
        raise ValueError("tool_choice: given without tools")
    parsed = check_messages(messages) if messages is not None else ()
    if not parsed and not prompt:
        raise ValueError("messages: there must be at least one message (or a prompt)")
    return CompletionRequest(
        prompt or "",
        max_tokens,
        system,
        temperature,
        messages=parsed,
        tools=parsed_tools,
        tool_choice=choice,
        response_format=parse_response_format(response_format),
        top_p=top_p,
        stop=parse_stop(stop),
    )


def check_extra(extra: Any) -> Mapping[str, Mapping[str, Any]] | None:
    """``extra`` validated: provider kind or name -> body fields merged into that provider's
    request (unportable: each API's own fields)."""
    if extra is None:
        return None
    if not isinstance(extra, Mapping) or not all(
        isinstance(k, str) and isinstance(v, Mapping) for k, v in extra.items()
    ):
        raise ValueError("extra: must map a provider kind or name to an object of body fields")
    return extra
