"""One provider's JSON text, reusing the text of its previous version where it can.

An update usually appends an outcome and a sample to histories of up to 1,000 entries and
drops the oldest. Encoding those histories is most of the cost of a save, so when the
previous text and the state decoded from it are at hand, the entries kept from before are
copied as text and only the new ones are encoded. The result is exactly what
``json.dumps(state.to_dict())`` would give, except that kept entries keep their old
spelling (the same values).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from typing import Any

from ..state import ProviderState

# Strict JSON: NaN and infinities raise ValueError (merged state never holds them: see
# failover_cli.state.merge_provider), so no file or Redis value ever carries them.
ENCODE = json.JSONEncoder(separators=(",", ":"), check_circular=False, allow_nan=False).encode

# The start of a provider written by ProviderState.to_dict: the breaker (scalars only), the
# derived counter, then the outcomes array. Raw quotes cannot occur inside JSON strings, so
# when this matches text that parsed as JSON, these are the top-level keys.
_HEAD = re.compile(rb'\{"breaker":\{[^{}\[\]]*\},"consecutive_failures":-?\d+,"outcomes":\[')
_SAMPLES = b'],"samples":['
_AFTER = b'],"requests":'
_FLAT = re.compile(rb"(?:\[[^\[\]\"{}]*\](?:,\[[^\[\]\"{}]*\])*)?")  # [..],[..] nothing nested
_EMPTY = b'"outcomes":[],"samples":[]'


def encode_provider(
    state: ProviderState, previous: ProviderState | None = None, text: bytes | None = None
) -> bytes:
    """``state`` as compact JSON. ``previous`` and its ``text``, if given, must be the state
    decoded from ``text`` (or encoded into it): their shared entries are not re-encoded."""
    if previous is not None and text is not None:
        reused = _encode_reusing(state, previous, text)
        if reused is not None:
            return reused
    return ENCODE(state.to_dict()).encode()


def _encode_reusing(state: ProviderState, previous: ProviderState, text: bytes) -> bytes | None:
    arrays = _arrays(text)
    if arrays is None:
        return None
    outcomes = _reuse(
        state.outcomes,
        previous.outcomes,
        arrays[0],
        lambda new: ProviderState(outcomes=list(new)).to_dict()["outcomes"],
    )
    samples = _reuse(
        state.samples,
        previous.samples,
        arrays[1],
        lambda new: ProviderState(samples=list(new)).to_dict()["samples"],
    )
    if outcomes is None or samples is None:
        return None
    light = ProviderState(
        breaker=state.breaker,
        requests=state.requests,
        successes=state.successes,
        failures=state.failures,
        last_error=state.last_error,
        last_health=state.last_health,
        last_ratelimit=state.last_ratelimit,
        spend=state.spend,
    ).to_dict()
    light["consecutive_failures"] = state.consecutive_failures
    head = ENCODE(light).encode()
    if head.count(_EMPTY) != 1:  # to_dict's layout changed: encode the ordinary way
        return None
    return head.replace(_EMPTY, b'"outcomes":[' + outcomes + _SAMPLES + samples + b"]")


def _arrays(text: bytes) -> tuple[list[bytes], list[bytes]] | None:
    """The entries of the outcomes and samples arrays of a provider's text, each as text."""
    head = _HEAD.match(text)
    if head is None:
        return None
    start = head.end()
    middle = text.find(_SAMPLES, start)
    if middle < 0:
        return None
    end = text.find(_AFTER, middle + len(_SAMPLES))
    if end < 0:
        return None
    outcomes = text[start:middle]
    samples = text[middle + len(_SAMPLES) : end]
    if not (_FLAT.fullmatch(outcomes) and _FLAT.fullmatch(samples)):
        return None
    return _entries(outcomes), _entries(samples)


def _entries(inner: bytes) -> list[bytes]:
    """``[a],[b],[c]`` -> ``[b"a", b"b", b"c"]`` (entries hold no brackets: see _FLAT)."""
    return inner[1:-1].split(b"],[") if inner else []


def _reuse(
    new: Sequence[Any],
    old: Sequence[Any],
    old_entries: list[bytes],
    encode: Callable[[Sequence[Any]], list[Any]],
) -> bytes | None:
    """The array body for ``new`` when it is a suffix of ``old`` (the very same objects)
    followed by new entries; ``None`` if it is anything else (e.g. re-sorted)."""
    if len(old_entries) != len(old):
        return None
    kept = 0
    if new and old:
        first = new[0]
        start = next((i for i in range(len(old)) if old[i] is first), None)
        if start is not None:
            kept = len(old) - start
            if kept > len(new) or any(new[i] is not old[start + i] for i in range(kept)):
                return None
    parts = []
    if kept:
        parts.append(b"[" + b"],[".join(old_entries[len(old) - kept :]) + b"]")
    if len(new) > kept:
        parts.append(ENCODE(encode(new[kept:])).encode()[1:-1])
    return b",".join(parts)
