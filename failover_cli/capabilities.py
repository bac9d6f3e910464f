"""What each provider's current API takes, per kind and model: which sampling parameters, in
which range, whether it takes tools, images and structured output, and how a stream broken
mid-answer can be continued there.

The router consults this before every attempt, so a parameter one provider cannot take never
stops the chain: it is dropped or clamped for that provider alone, with a reason in the trace.
A request that needs a feature (tools, images, JSON output) skips providers without it.
``providers[].drop_params``, ``providers[].continuation`` and ``providers[].capabilities``
override the table.

Sources: the current official SDKs (anthropic 2.16: ``messages.create`` has no ``temperature``,
``top_p`` or ``top_k``, and a final assistant turn is a 400 on models without prefill; openai
3.57: reasoning models take only the default temperature) and the wire-facts notes in the
project's shared reference. Structured output on Claude: ``output_config.format`` from Sonnet
4.5, Haiku 4.5 and Opus 4.1 on (the Claude docs, "Structured outputs"); older models are given
one forced tool whose input is the answer.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Literal

from .records import frozen
from .types import CapabilityOverrides, CompletionRequest, ParameterAdjusted, ProviderConfig

Strategy = Literal["prefill", "instruct", "restart"]

# Claude generations from 4.6 on (and the 5 line) reject assistant prefill and have no
# sampling parameters in the current Messages API.
_CLAUDE_CURRENT = re.compile(r"claude-(?:(?:opus|sonnet|haiku)-(?:4-[6-9]|[5-9])|fable|mythos)")
# Claude models with native structured output (output_config.format).
_CLAUDE_JSON = re.compile(
    r"claude-(?:(?:opus|sonnet|haiku)-(?:4-[5-9]|[5-9])|opus-4-1|fable|mythos)"
)
# OpenAI reasoning models take only the default temperature (1), and no top_p or stop.
_OPENAI_REASONING = re.compile(r"(?:^|/)(?:o\d|gpt-5|gpt-6)(?!.*chat)")
_GEMINI_IMAGES = frozenset({"image/png", "image/jpeg", "image/webp", "image/heic", "image/heif"})
# Ollama model families that read images.
_OLLAMA_VISION = re.compile(
    r"llava|vision|-vl|vl:|gemma3|minicpm-v|moondream|llama4|mistral-small3|granite3\.2-vision"
)


@frozen
class Capabilities:
    """What one provider accepts. ``temperature`` is a (low, high) range, or None: not taken
    (nor ``top_p``). ``native_json``: structured output as the API's own parameter (else, for
    Anthropic, as one forced tool)."""

    temperature: tuple[float, float] | None
    continuation: tuple[Strategy, ...]
    why_no_temperature: str = ""
    tools: bool = True
    vision: bool = True
    json_schema: bool = True
    native_json: bool = True
    stop: bool = True
    image_urls: bool = True  # images by URL, not only inline
    image_types: frozenset[str] | None = None  # inline image media types taken; None: all four
    max_stop: int | None = None  # stop sequences taken at most; None: no limit known


def capabilities(provider: ProviderConfig) -> Capabilities:
    """The table's entry for ``provider``, with its config overrides applied."""
    caps = _table(provider.kind, provider.model.lower())
    if "temperature" in provider.drop_params:
        caps = replace(caps, temperature=None, why_no_temperature="listed in drop_params")
    if "stop" in provider.drop_params:
        caps = replace(caps, stop=False)
    if provider.continuation != "auto":
        first: Strategy = provider.continuation
        rest = tuple(s for s in ("prefill", "instruct", "restart") if s != first)
        caps = replace(caps, continuation=(first, *rest))  # type: ignore[arg-type]
    if provider.capabilities is not None:
        caps = _override(caps, provider.capabilities)
    return caps


def _override(caps: Capabilities, over: CapabilityOverrides) -> Capabilities:
    if over.tools is not None:
        caps = replace(caps, tools=over.tools)
    if over.vision is not None:
        caps = replace(caps, vision=over.vision)
    if over.json_schema is not None:
        caps = replace(caps, json_schema=over.json_schema)
    if over.prefill is not None:
        rest = tuple(s for s in caps.continuation if s != "prefill") or ("restart",)
        caps = replace(caps, continuation=("prefill", *rest) if over.prefill else rest)
    return caps


def missing(caps: Capabilities, request: CompletionRequest) -> str | None:
    """Why a provider with ``caps`` cannot serve ``request`` at all, or None."""
    if request.uses_tools and not caps.tools:
        return "takes no tools"
    if request.has_images and not caps.vision:
        return "takes no images"
    if not caps.image_urls and request.url_images:
        return "takes images only inline, not by URL"
    if caps.image_types is not None:
        for media_type in sorted(request.image_types):
            if media_type not in caps.image_types:
                return f"takes no {media_type} images"
    if request.response_format is not None and not caps.json_schema:
        return "gives no structured output"
    return None


def _table(kind: str, model: str) -> Capabilities:
    if kind == "anthropic":
        native = bool(_CLAUDE_JSON.search(model))
        if _CLAUDE_CURRENT.search(model):
            return Capabilities(
                None,
                ("instruct", "restart"),
                "the current Messages API takes no temperature for this model",
                native_json=native,
            )
        return Capabilities((0.0, 1.0), ("prefill", "instruct", "restart"), native_json=native)
    if kind == "openai":
        # Chat Completions answers a final assistant turn with a new reply, not a continuation.
        if _OPENAI_REASONING.search(model):
            return Capabilities(
                None, ("instruct", "restart"), "reasoning models take only the default", stop=False
            )
        # StopConfiguration: maxItems 4 (OpenAI's OpenAPI spec).
        return Capabilities((0.0, 2.0), ("instruct", "restart"), max_stop=4)
    if kind == "ollama":
        vision = bool(_OLLAMA_VISION.search(model))
        return Capabilities(
            (0.0, float("inf")),
            ("prefill", "instruct", "restart"),
            vision=vision,
            image_urls=False,
        )
    # Gemini: PNG, JPEG, WebP, HEIC and HEIF, but not GIF (ai.google.dev, "Image understanding").
    return Capabilities((0.0, 2.0), ("instruct", "restart"), image_types=_GEMINI_IMAGES)


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
    if request.top_p is not None and caps.temperature is None:
        why = caps.why_no_temperature.replace("temperature", "top_p")
        notes.append(ParameterAdjusted(provider.name, "top_p", "dropped", why))
        request = replace(request, top_p=None)
    if request.stop and not caps.stop:
        why = "this model takes no stop sequences"
        notes.append(ParameterAdjusted(provider.name, "stop", "dropped", why))
        request = replace(request, stop=())
    elif caps.max_stop is not None and len(request.stop) > caps.max_stop:
        why = f"{len(request.stop)} stop sequences; this API takes {caps.max_stop}: sent the first"
        notes.append(ParameterAdjusted(provider.name, "stop", "clamped", why))
        request = replace(request, stop=request.stop[: caps.max_stop])
    return request, notes
