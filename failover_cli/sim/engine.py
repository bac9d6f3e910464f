"""Decide how to answer one request: which status, which bytes, after which pauses.

The dialects render bytes; the server sends a :class:`Plan`; this module, in between, applies
the :class:`~failover_cli.sim.behavior.Behavior` (scripted statuses, random failures, faults,
timing). Nothing here does I/O.
"""

from __future__ import annotations

import re
import time
import zlib
from dataclasses import field
from functools import cache
from typing import Literal

from ..records import slotted
from . import anthropic, gemini, ollama, openai
from .behavior import CUTTING_FAULTS, ERROR_FAULTS, Behavior, Script, split_tokens
from .wire import (
    ChatView,
    Dialect,
    End,
    Exchange,
    RecordedRequest,
    Reply,
    Route,
    SimToolCall,
    StreamFrames,
    count_words,
    dumps,
    example_of,
    new_id,
    quote,
)

DIALECTS: dict[str, Dialect] = {
    "anthropic": anthropic.DIALECT,
    "openai": openai.DIALECT,
    "ollama": ollama.DIALECT,
    "gemini": gemini.DIALECT,
}

Ending = Literal[
    "end",  # finish the message, keep the connection
    "end_close",  # finish the message, then close the connection
    "cut",  # close the connection without finishing the message
    "abort",  # reset the connection without finishing the message
    "hang",  # send nothing at all, ever
    "stall",  # send the pieces, then nothing more, with the connection left open
]
_STREAM_ENDS = {
    "truncate": End.CUT,
    "reset": End.CUT,
    "stall": End.CUT,
    "malformed": End.MALFORMED,
    "midstream_error": End.ERROR,
    "no_end_marker": End.NO_MARKER,
}
DEEP = 100_000  # nesting of the deep_json fault
_DEEP_JSON = b"[" * DEEP + b"]" * DEEP
_BAD_TEXT = b"42"  # the bad_delta fault: a number where text belongs
_ENDLESS = b"a" * 65536  # repeated for ever by the endless fault
_COUNTS = re.compile(
    rb'("(?:input_tokens|output_tokens|prompt_tokens|completion_tokens|total_tokens'
    rb'|prompt_eval_count|eval_count|promptTokenCount|candidatesTokenCount|totalTokenCount)"'
    rb":\s?)\d+"
)
_WHOLE_ENDS: dict[str, Ending] = {"truncate": "cut", "reset": "abort", "stall": "stall"}
BOMB_MIB = 512  # what the gzip_bomb fault inflates to


@slotted
class Plan:
    """A response to send: status and headers after ``wait``, then each piece after its pause,
    then ``repeat`` again and again until the client goes (when set).

    ``content_length`` is declared instead of the pieces' total when the body is cut short.
    """

    status: int = 200
    headers: list[tuple[str, str]] = field(default_factory=list)
    pieces: list[tuple[float, bytes]] = field(default_factory=list)
    wait: float = 0.0
    chunked: bool = False
    content_length: int | None = None
    ending: Ending = "end"
    repeat: bytes | None = None

    @property
    def instant(self) -> bool:
        """Whether it can be written at once, without waiting for anything."""
        return (
            not self.wait
            and self.ending == "end"
            and self.repeat is None
            and not any(p for p, _ in self.pieces)
        )


def plan(dialect: Dialect, script: Script, request: RecordedRequest, api_key: str | None) -> Plan:
    """How to answer ``request``, following ``script``."""
    route = dialect.route(request)
    if route is None:
        return _from_reply(dialect.unknown_route(request))
    denied = dialect.check_auth(request, api_key)
    if denied is not None:
        return _from_reply(denied)
    behavior = script.behavior
    if not route.completion:
        if behavior.health_status not in (None, 200):
            error = dialect.status_error(behavior.health_status, None)
            return _from_reply(error, behavior.retry_headers)
        models = list(behavior.models or [behavior.model or dialect.default_model])
        return _from_reply(dialect.health(request, route, models))
    early = dialect.check_request(request)
    if early is not None:
        return _from_reply(early)
    answer = _completion(dialect, script, request, route)
    if answer.ending != "hang":
        answer.headers += dialect.ratelimit_headers(behavior.budgets, time.time())
    return answer


def _completion(dialect: Dialect, script: Script, request: RecordedRequest, route: Route) -> Plan:
    """The answer to a well-formed completion request."""
    behavior = script.behavior
    fault = behavior.fault
    tokens = [] if fault == "empty" else _rest_of_answer(script, request)
    view = dialect.chat_view(request)
    calls = _tool_calls(view, behavior, dialect.tool_id_prefix)
    if calls:
        tokens = []
    elif view.json and fault != "empty":
        tokens = split_tokens(_json_answer(view, behavior))
    exchange = _exchange(dialect, behavior, request, route, len(tokens))
    exchange.tool_calls = calls
    status = script.next_status()
    if status != 200:
        return _from_reply(dialect.status_error(status, exchange), behavior.retry_headers)
    if fault == "hang":
        return Plan(status=0, ending="hang")  # status 0: no answer
    if fault in ERROR_FAULTS:
        return _from_reply(dialect.fault_error(fault, exchange), behavior.retry_headers)
    if fault == "reject_prefill" and (refusal := dialect.prefill_error(request)) is not None:
        return _from_reply(refusal, behavior.retry_headers)
    if fault == "midstream_error" and not exchange.stream:
        error = dialect.status_error(dialect.overloaded_status, exchange)
        return _from_reply(error, behavior.retry_headers)
    if fault == "gzip_bomb":
        return _bomb(dialect, exchange)
    if exchange.stream:
        answer = _stream(dialect, behavior, exchange, tokens)
    else:
        answer = _whole(dialect, behavior, exchange, tokens)
    if fault == "drip":
        answer.pieces = _drip(answer.pieces, behavior)
    return answer


def _tool_calls(view: ChatView, behavior: Behavior, prefix: str) -> list[SimToolCall]:
    """The tool call to answer with: the scripted one, else the forced or first offered tool
    with arguments from its schema; none when tools are not offered, forbidden, or the last
    turn already carries their results (unless a call is required)."""
    if not view.tools or not behavior.call_tools or view.choice == "none":
        return []
    if view.after_tool and view.choice == "auto":
        return []
    if behavior.tool_call is not None:
        name, arguments = behavior.tool_call[0], dict(behavior.tool_call[1])
    else:
        name = view.choice if view.choice in view.tools else next(iter(view.tools))
        arguments = example_of(view.tools[name]) or {}
        if not isinstance(arguments, dict):
            arguments = {}
    return [SimToolCall(new_id(prefix), name, arguments)]


def _json_answer(view: ChatView, behavior: Behavior) -> str:
    if behavior.json_text is not None:
        return behavior.json_text
    value = example_of(view.schema) if view.schema is not None else {"answer": behavior.text}
    return dumps(value if value is not None else {}).decode()


def _rest_of_answer(script: Script, request: RecordedRequest) -> list[str]:
    """The tokens to send: the whole text, or, when the request continues a partial answer
    that the text begins with (a prefill, or an assistant turn followed by one user turn
    asking to go on), the rest of it, as a model continuing its own answer would."""
    partial = _partial_answer(request.json)
    text = script.behavior.text
    if partial:
        for prefix in (partial, partial.rstrip()):
            if prefix and text.startswith(prefix):
                return split_tokens(text[len(prefix) :])
    return script.tokens


def _partial_answer(body: object) -> str | None:
    """The text of the assistant turn a request ends with, or ends with but for one user turn."""
    if not isinstance(body, dict):
        return None
    turns = body.get("messages", body.get("contents"))
    if not isinstance(turns, list) or not turns:
        return None
    for turn in (turns[-1], turns[-2] if len(turns) > 1 else None):
        if isinstance(turn, dict) and turn.get("role") in ("assistant", "model"):
            return _turn_text(turn)
    return None


def _turn_text(turn: dict[str, object]) -> str | None:
    content = turn.get("content", turn.get("parts"))
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [b.get("text") for b in content if isinstance(b, dict)]
        return "".join(t for t in texts if isinstance(t, str)) or None
    return None


def _exchange(
    dialect: Dialect, behavior: Behavior, request: RecordedRequest, route: Route, tokens: int
) -> Exchange:
    model = behavior.model or dialect.requested_model(request, route) or dialect.default_model
    tps = behavior.tokens_per_second
    return Exchange(
        request=request,
        model=model,
        stream=dialect.wants_stream(request),
        input_tokens=max(1, count_words(request.json)),
        created=time.time(),
        request_id=new_id(dialect.id_prefix),
        latency=behavior.latency,
        ttft=behavior.ttft,
        generation=tokens / tps if tps else 0.0,
        refused=behavior.fault == "content_filter",
    )


def _whole(dialect: Dialect, behavior: Behavior, exchange: Exchange, tokens: list[str]) -> Plan:
    text = "".join(tokens)
    body = _poison(dialect.message(exchange, text, len(tokens)), quote(text), behavior.fault)
    headers = [("content-type", dialect.json_type), *dialect.response_headers(exchange.request_id)]
    wait = behavior.latency + behavior.ttft + exchange.generation
    answer = Plan(200, headers, [(0.0, body)], wait)
    fault = behavior.fault
    if fault in ("truncate", "reset", "malformed", "stall"):
        answer.pieces = [(0.0, body[: len(body) // 2])]
        if fault != "malformed":  # the declared length promises the whole body
            answer.content_length = len(body)
            answer.ending = _WHOLE_ENDS[fault]
    elif fault == "endless":
        answer.pieces = [(0.0, b'{"endless":"')]
        answer.chunked, answer.repeat = True, _ENDLESS
    return answer


def _stream(dialect: Dialect, behavior: Behavior, exchange: Exchange, tokens: list[str]) -> Plan:
    fault = behavior.fault
    if fault in CUTTING_FAULTS:
        tokens = tokens[: behavior.fault_after_tokens]
    frames = dialect.stream(exchange, tokens, _STREAM_ENDS.get(fault or "", End.COMPLETE))
    repeat = _spoil(frames, tokens, behavior)
    gap = 1.0 / behavior.tokens_per_second if behavior.tokens_per_second else 0.0
    pieces = [(0.0, b"".join(frames.head))] if frames.head else []
    for index, frame in enumerate(frames.tokens):
        pieces.append((behavior.ttft if index == 0 else gap, frame))
    if frames.tail:
        pieces.append((0.0 if frames.tokens else behavior.ttft, b"".join(frames.tail)))
    if not any(pause for pause, _ in pieces):  # one write is much cheaper than many
        pieces = [(0.0, b"".join(data for _, data in pieces))]
    headers = [
        ("content-type", dialect.stream_type(exchange.request)),
        ("cache-control", "no-cache"),
        *dialect.response_headers(exchange.request_id),
    ]
    ending: Ending = "end"
    if fault == "truncate":
        ending = "end_close"
        headers.append(("connection", "close"))
    elif fault == "reset":
        ending = "abort"
    elif fault == "stall":
        ending = "stall"
    answer = Plan(200, headers, pieces, behavior.latency, chunked=True, ending=ending)
    answer.repeat = repeat
    return answer


def _poison(data: bytes, literal: bytes, fault: str | None) -> bytes:
    """``data`` with the fault's poison in place of the JSON string ``literal`` (its first
    occurrence), or its token counts made huge."""
    if fault == "huge_number":
        return _COUNTS.sub(rb"\g<1>1e400", data)
    if fault == "deep_json":
        return data.replace(literal, _DEEP_JSON, 1)
    if fault == "bad_delta":
        return data.replace(literal, _BAD_TEXT, 1)
    return data


def _spoil(frames: StreamFrames, tokens: list[str], behavior: Behavior) -> bytes | None:
    """Apply a fault that corrupts one frame of a rendered stream (the one after
    ``fault_after_tokens`` tokens), or all its counts; the bytes to repeat for ever, if any."""
    fault = behavior.fault
    if fault == "huge_number":
        for part in (frames.head, frames.tokens, frames.tail):
            part[:] = [_poison(frame, b"", fault) for frame in part]
        return None
    if fault not in ("deep_json", "bad_delta", "endless") or not tokens:
        return None
    index = min(behavior.fault_after_tokens, len(tokens) - 1)
    literal = quote(tokens[index])
    if fault != "endless":
        frames.tokens[index] = _poison(frames.tokens[index], literal, fault)
        return None
    opening = frames.tokens[index].split(literal, 1)[0] + b'"'
    frames.tokens[index:] = [opening]
    frames.tail.clear()
    return _ENDLESS


def _bomb(dialect: Dialect, exchange: Exchange) -> Plan:
    """A gzip body of a few hundred KiB that inflates to ``BOMB_MIB`` MiB of zeros."""
    kind = dialect.stream_type(exchange.request) if exchange.stream else dialect.json_type
    headers = [("content-type", kind), ("content-encoding", "gzip")]
    return Plan(200, headers, [(0.0, gzip_bomb(BOMB_MIB))])


@cache
def gzip_bomb(mib: int) -> bytes:
    """gzip of ``mib`` MiB of zeros, built from one compressed MiB repeated (each flushed in
    full, so the copies decode alike); the stream is never finished: nobody should get there."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    block = bytes(1024 * 1024)
    first = compressor.compress(block) + compressor.flush(zlib.Z_FULL_FLUSH)
    again = compressor.compress(block) + compressor.flush(zlib.Z_FULL_FLUSH)
    return first + again * (mib - 1)


def _drip(pieces: list[tuple[float, bytes]], behavior: Behavior) -> list[tuple[float, bytes]]:
    """The same bytes in ``drip_bytes`` slices, ``drip_interval`` apart."""
    size, interval = behavior.drip_bytes, behavior.drip_interval
    slices = []
    for pause, data in pieces:
        for start in range(0, len(data), size):
            slices.append(((pause if start == 0 else 0.0) + interval, data[start : start + size]))
    if slices:
        slices[0] = (slices[0][0] - interval, slices[0][1])
    return slices


def _from_reply(reply: Reply, extra: list[tuple[str, str]] | None = None) -> Plan:
    headers = [("content-type", reply.content_type), *reply.headers, *(extra or ())]
    return Plan(reply.status, headers, [(0.0, reply.body)] if reply.body else [])
