"""Checks made on stored state before it is used, beyond what the data model's decoders do.

A stored value that passes ``from_dict`` can still break a later merge (a ``last_error``
that is not an object) or be misjudged (a newer document of another shape, a boolean
schema). The stores run these so such a value is treated as unreadable, or as newer, and
never raises anything but the store's own errors.
"""

from __future__ import annotations

from typing import Any

from ..state import SCHEMA_VERSION, ForeignDocument, FutureSchema, ProviderState

# What decoding a malformed value can raise (OverflowError: a JSON 1e400 given to int()).
DECODE_ERRORS = (TypeError, ValueError, KeyError, AttributeError, OverflowError)


def check_envelope(doc: Any) -> None:
    """Raise FutureSchema for a newer document whatever its shape, ForeignDocument for a
    schema that is not a whole number. Anything else is left to ``state.migrate``."""
    if not isinstance(doc, dict) or "schema" not in doc:
        return
    schema = doc["schema"]
    if isinstance(schema, bool) or not isinstance(schema, int):
        raise ForeignDocument("not a failover state document")
    if schema > SCHEMA_VERSION:
        raise FutureSchema(f"state schema {schema} is newer than this failover ({SCHEMA_VERSION})")


def check_provider(state: ProviderState) -> ProviderState:
    """Raise ValueError if the state would break a merge; return it otherwise."""
    for name in ("last_error", "last_health"):
        value = getattr(state, name)
        if value is None:
            continue
        if not isinstance(value, dict):
            raise ValueError(f"{name} is not an object")
        at = value.get("at")
        if at is not None and (isinstance(at, bool) or not isinstance(at, int | float)):
            raise ValueError(f"{name}.at is not a number")
    return state
