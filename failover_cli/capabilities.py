"""What each provider's current API takes, per kind and model: which sampling parameters, in
which range, and how a stream broken mid-answer can be continued there.

The router consults this before every attempt, so a parameter one provider cannot take never
stops the chain: it is dropped or clamped for that provider alone, with a reason in the trace.
``providers[].drop_params`` and ``providers[].continuation`` override the table.

Sources: the current official SDKs (anthropic 2.16: ``messages.create`` has no ``temperature``,
``top_p`` or ``top_k``, and a final assistant turn is a 400 on models without prefill; openai
3.57: reasoning models take only the default temperature) and the wire-facts notes in the
project's shared reference.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Literal

from .types import CompletionRequest, ParameterAdjusted, ProviderConfig

Strategy = Literal["prefill", "instruct", "restart"]

# Claude generations from 4.6 on (and the 5 line) reject assistant prefill and have no
# sampling parameters in the current Messages API.
_CLAUDE_CURRENT = re.compile(r"claude-(?:(?:opus|sonnet|haiku)-(?:4-[6-9]|[5-9])|fable|mythos)")
# OpenAI reasoning models take only the default temperature (1).
_OPENAI_REASONING = re.compile(r"(?:^|/)(?:o\d|gpt-5|gpt-6)(?!.*chat)")


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What one provider accepts. ``temperature`` is a (low, high) range, or None: not taken."""

    temperature: tuple[float, float] | None
    continuation: tuple[Strategy, ...]
    why_no_temperature: str = ""


def capabilities(provider: ProviderConfig) -> Capabilities:
    """The table's entry for ``provider``, with its config overrides applied."""
    caps = _table(provider.kind, provider.model.lower())
    if "temperature" in provider.drop_params:
        caps = replace(caps, temperature=None, why_no_temperature="listed in drop_params")
    if provider.continuation != "auto":
        first: Strategy = provider.continuation
        rest = tuple(s for s in ("prefill", "instruct", "restart") if s != first)
        caps = replace(caps, continuation=(first, *rest))  # type: ignore[arg-type]
    return caps


def _table(kind: str, model: str) -> Capabilities:
    if kind == "anthropic":
        if _CLAUDE_CURRENT.search(model):
            return Capabilities(
                None,
                ("instruct", "restart"),
                "the current Messages API takes no temperature for this model",
            )
        return Capabilities((0.0, 1.0), ("prefill", "instruct", "restart"))
    if kind == "openai":
        # Chat Completions answers a final assistant turn with a new reply, not a continuation.
        if _OPENAI_REASONING.search(model):
            return Capabilities(
                None, ("instruct", "restart"), "reasoning models take only the default"
            )
        return Capabilities((0.0, 2.0), ("instruct", "restart"))
    if kind == "ollama":
        return Capabilities((0.0, float("inf")), ("prefill", "instruct", "restart"))
    return Capabilities((0.0, 2.0), ("instruct", "restart"))  # gemini


def adapt(
    request: CompletionRequest, provider: ProviderConfig, caps: Capabilities | None = None
) -> tuple[CompletionRequest, list[ParameterAdjusted]]:
    """``request`` as ``provider`` can take it, and what was changed."""
    caps = caps or capabilities(provider)
    notes: list[ParameterAdjusted] = []
    t = request.temperature
    if t is not None:
        if caps.temperature is None:
            notes.append(
                ParameterAdjusted(provider.name, "temperature", "dropped", caps.why_no_temperature)
            )
            request = replace(request, temperature=None)
        else:
            low, high = caps.temperature
            clamped = min(max(t, low), high)
            if clamped != t:
                notes.append(
                    ParameterAdjusted(
                        provider.name,
                        "temperature",
                        "clamped",
                        f"{t:g} is outside {low:g}..{high:g} here; sent {clamped:g}",
                    )
                )
                request = replace(request, temperature=clamped)
    return request, notes
