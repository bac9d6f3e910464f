"""Reading an adapter's stream in tests: its events, its text, its tool calls reassembled."""

from __future__ import annotations

from typing import Any

from failover_cli.types import CompletionRequest, StreamEvent, TextDelta, ToolCallDelta


async def events_of(provider: Any, request: CompletionRequest) -> list[StreamEvent]:
    return [event async for event in provider.stream(request, timeout=5)]


def assembled(events: list[StreamEvent]) -> dict[int, dict[str, str]]:
    """The streamed tool calls put back together, by index."""
    calls: dict[int, dict[str, str]] = {}
    for e in events:
        if isinstance(e, ToolCallDelta):
            call = calls.setdefault(e.index, {"id": "", "name": "", "arguments": ""})
            call["id"] = e.id or call["id"]
            call["name"] = e.name or call["name"]
            call["arguments"] += e.arguments
    return calls


def text_of(events: list[StreamEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))
