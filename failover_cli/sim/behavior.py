"""What a simulated provider answers, how slowly, and how it fails.

A :class:`Behavior` is immutable; a simulator swaps it whole at runtime. The mutable part of
following it (the scripted statuses still to come, the seeded random generator) lives in a
:class:`Script`, rebuilt whenever the behaviour is replaced.
"""

from __future__ import annotations

import math
import random
import re
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

from .wire import Budget

Fault = Literal[
    "hang",  # read the request, never answer
    "drip",  # answer normally, a few bytes at a time with pauses
    "truncate",  # stream some tokens then end without the terminal marker; JSON: close mid-body
    "reset",  # like truncate, but the connection is aborted (RST) instead of ended
    "malformed",  # 200 with invalid JSON (in the body, or in one stream line)
    "midstream_error",  # stream some tokens then the dialect's in-stream error
    "context_length",  # the dialect's real context-length error
    "quota",  # out of credit / quota, as the dialect reports it
    "auth",  # 401 with the dialect's body
    "not_found",  # 404 model not found
    "empty",  # 200 with no text
    "stall",  # some tokens (JSON: half the body), then silence with the connection open
    "no_end_marker",  # the stream reports its finish, then ends without the optional marker
    "deep_json",  # JSON nested 100,000 deep (a stream: in one event after some tokens)
    "huge_number",  # token counts of 1e400
    "bad_delta",  # a text delta that is a number (JSON: the answer text is a number)
    "gzip_bomb",  # a small gzip body that inflates to 512 MiB of zeros
    "endless",  # a body that never ends (a stream: one event that never ends, after some tokens)
    "reject_prefill",  # 400 in the dialect's words when the last turn is the assistant's
    "content_filter",  # the answer, ended by the dialect's refusal / content-filter reason
]
FAULTS: tuple[str, ...] = get_args(Fault)

# Faults that cut a stream after ``fault_after_tokens`` tokens.
CUTTING_FAULTS = frozenset({"truncate", "reset", "malformed", "midstream_error", "stall"})
# Faults answered with an error status instead of an answer.
ERROR_FAULTS = frozenset({"context_length", "quota", "auth", "not_found"})


@dataclass(frozen=True)
class Behavior:
    """How a simulator answers completion requests. Every default is harmless.

    Timing: ``latency`` passes before the status line; in a stream ``ttft`` then passes before
    the first token and ``1 / tokens_per_second`` between tokens. A non-streamed answer waits
    for all of it (``latency + ttft + tokens / tokens_per_second``) before the status line.

    Failures, in order of precedence for each completion request: the next of ``statuses``
    (200 answers normally), else a random ``failure_status`` with probability
    ``failure_rate`` (seeded by ``seed``, so reproducible), else ``fault`` (if any).
    Health endpoints answer normally unless ``health_status`` is set.

    Rate limits: with ``remaining_requests`` or ``remaining_tokens`` set, every completion
    response (errors too) reports them in the dialect's rate-limit headers (Anthropic and
    OpenAI; Gemini and Ollama send none), refilling ``requests_reset`` / ``tokens_reset``
    seconds later.
    """

    text: str = "Hello from the failover simulator."
    model: str | None = None  # model reported; None: the requested one
    models: Sequence[str] | None = None  # listed by the health endpoint; None: [model]
    latency: float = 0.0
    ttft: float = 0.0
    tokens_per_second: float | None = None
    failure_rate: float = 0.0
    failure_status: int = 500
    seed: int = 0
    statuses: Sequence[int] = ()
    retry_after: float | str | None = None  # Retry-After header on error responses
    retry_after_ms: int | None = None  # retry-after-ms header on error responses
    fault: Fault | None = None
    fault_after_tokens: int = 2
    health_status: int | None = None
    drip_bytes: int = 8
    drip_interval: float = 0.01
    remaining_requests: int | None = None
    remaining_tokens: int | None = None
    requests_reset: float = 1.0
    tokens_reset: float = 60.0
    # Tools: when a request offers tools (and does not forbid calling them), the answer is a
    # call of ``tool_call`` (a name and its arguments), else of the forced or first offered
    # tool with arguments made from its schema; after the tool's result, the text. With
    # ``call_tools`` False the simulator never calls a tool.
    call_tools: bool = True
    tool_call: tuple[str, Mapping[str, Any]] | None = None
    # Structured output: a request for JSON is answered with ``json_text``, else with an
    # instance made from the requested schema.
    json_text: str | None = None

    def __post_init__(self) -> None:
        problems = _problems(self)
        if problems:
            raise ValueError("invalid Behavior: " + "; ".join(problems))

    @property
    def retry_headers(self) -> list[tuple[str, str]]:
        """The Retry-After headers every error response of this behaviour carries."""
        headers = []
        if self.retry_after is not None:
            value = self.retry_after
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            headers.append(("retry-after", str(value)))
        if self.retry_after_ms is not None:
            headers.append(("retry-after-ms", str(self.retry_after_ms)))
        return headers

    @property
    def budgets(self) -> list[Budget]:
        """The rate-limit budgets this behaviour reports."""
        budgets = []
        if self.remaining_requests is not None:
            budgets.append(Budget("requests", self.remaining_requests, self.requests_reset))
        if self.remaining_tokens is not None:
            budgets.append(Budget("tokens", self.remaining_tokens, self.tokens_reset))
        return budgets


def _problems(b: Behavior) -> list[str]:
    problems = []
    for name in ("latency", "ttft", "drip_interval", "requests_reset", "tokens_reset"):
        value = getattr(b, name)
        if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
            problems.append(f"{name} must be a number >= 0, got {value!r}")
    tps = b.tokens_per_second
    if tps is not None and not (isinstance(tps, int | float) and tps > 0):
        problems.append(f"tokens_per_second must be > 0 or None, got {tps!r}")
    if not 0.0 <= b.failure_rate <= 1.0:
        problems.append(f"failure_rate must be within [0, 1], got {b.failure_rate!r}")
    for status in (b.failure_status, *b.statuses, *([b.health_status] if b.health_status else [])):
        if not (isinstance(status, int) and 100 <= status <= 599):
            problems.append(f"status codes must be integers in 100..599, got {status!r}")
    if b.fault is not None and b.fault not in FAULTS:
        problems.append(f"fault must be one of {', '.join(FAULTS)}, got {b.fault!r}")
    if b.fault_after_tokens < 0 or b.drip_bytes < 1:
        problems.append("fault_after_tokens must be >= 0 and drip_bytes >= 1")
    if b.retry_after_ms is not None and b.retry_after_ms < 0:
        problems.append(f"retry_after_ms must be >= 0, got {b.retry_after_ms!r}")
    for name in ("remaining_requests", "remaining_tokens"):
        value = getattr(b, name)
        if value is not None and not (isinstance(value, int) and value >= 0):
            problems.append(f"{name} must be an integer >= 0 or None, got {value!r}")
    return problems


_TOKEN = re.compile(r"\s*\S+")


def split_tokens(text: str) -> list[str]:
    """Split ``text`` into words, each keeping the whitespace before it; they join back to it."""
    tokens = _TOKEN.findall(text)
    rest = text[sum(map(len, tokens)) :]
    if rest:
        if tokens:
            tokens[-1] += rest
        else:
            tokens = [rest]
    return tokens


class Script:
    """A behaviour being followed: the scripted statuses left and the seeded generator.

    Only the simulator's own thread calls :meth:`next_status`.
    """

    def __init__(self, behavior: Behavior) -> None:
        self.behavior = behavior
        self.tokens = split_tokens(behavior.text)
        self._statuses = deque(behavior.statuses)
        self._rng = random.Random(behavior.seed)

    def continue_from(self, previous: Script) -> None:
        """Take over what ``previous`` has not consumed yet: its statuses and random draws."""
        self._statuses = previous._statuses
        self._rng = previous._rng

    def next_status(self) -> int:
        """The status of the next completion request: 200 means answer (or apply the fault)."""
        if self._statuses:
            return self._statuses.popleft()
        b = self.behavior
        if b.failure_rate and self._rng.random() < b.failure_rate:
            return b.failure_status
        return 200
