"""Decide how to answer one request: which status, which bytes, after which pauses.

The dialects render bytes; the server sends a :class:`Plan`; this module, in between, applies
the :class:`~failover_cli.sim.behavior.Behavior` (scripted statuses, random failures, faults,
timing). Nothing here does I/O.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Literal

from . import anthropic, gemini, ollama, openai
from .behavior import CUTTING_FAULTS, ERROR_FAULTS, Behavior, Script
from .wire import Dialect, End, Exchange, RecordedRequest, Reply, Route, count_words, new_id

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
]
_STREAM_ENDS = {
    "truncate": End.CUT,
    "reset": End.CUT,
    "malformed": End.MALFORMED,
    "midstream_error": End.ERROR,
}


@dataclass(slots=True)
class Plan:
    """A response to send: status and headers after ``wait``, then each piece after its pause.

    ``content_length`` is declared instead of the pieces' total when the body is cut short.
    """

    status: int = 200
    headers: list[tuple[str, str]] = field(default_factory=list)
    pieces: list[tuple[float, bytes]] = field(default_factory=list)
    wait: float = 0.0
    chunked: bool = False
    content_length: int | None = None
    ending: Ending = "end"

    @property
    def instant(self) -> bool:
        """Whether it can be written at once, without waiting for anything."""
        return not self.wait and self.ending == "end" and not any(p for p, _ in self.pieces)


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

    fault = behavior.fault
    tokens = [] if fault == "empty" else script.tokens
    exchange = _exchange(dialect, behavior, request, route, len(tokens))
    status = script.next_status()
    if status != 200:
        return _from_reply(dialect.status_error(status, exchange), behavior.retry_headers)
    if fault == "hang":
        return Plan(status=0, ending="hang")  # status 0: no answer
    if fault in ERROR_FAULTS:
        return _from_reply(dialect.fault_error(fault, exchange), behavior.retry_headers)
    if fault == "midstream_error" and not exchange.stream:
        error = dialect.status_error(dialect.overloaded_status, exchange)
        return _from_reply(error, behavior.retry_headers)
    if exchange.stream:
        answer = _stream(dialect, behavior, exchange, tokens)
    else:
        answer = _whole(dialect, behavior, exchange, tokens)
    if fault == "drip":
        answer.pieces = _drip(answer.pieces, behavior)
    return answer


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
    )


def _whole(dialect: Dialect, behavior: Behavior, exchange: Exchange, tokens: list[str]) -> Plan:
    body = dialect.message(exchange, "".join(tokens), len(tokens))
    headers = [("content-type", dialect.json_type), *dialect.response_headers(exchange.request_id)]
    wait = behavior.latency + behavior.ttft + exchange.generation
    answer = Plan(200, headers, [(0.0, body)], wait)
    if behavior.fault in ("truncate", "reset", "malformed"):
        answer.pieces = [(0.0, body[: len(body) // 2])]
        if behavior.fault != "malformed":  # the declared length promises the whole body
            answer.content_length = len(body)
            answer.ending = "cut" if behavior.fault == "truncate" else "abort"
    return answer


def _stream(dialect: Dialect, behavior: Behavior, exchange: Exchange, tokens: list[str]) -> Plan:
    fault = behavior.fault
    if fault in CUTTING_FAULTS:
        tokens = tokens[: behavior.fault_after_tokens]
    frames = dialect.stream(exchange, tokens, _STREAM_ENDS.get(fault or "", End.COMPLETE))
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
    return Plan(200, headers, pieces, behavior.latency, chunked=True, ending=ending)


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
