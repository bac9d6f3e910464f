"""The state file's text: the :func:`failover_cli.state.dump_document` value, one provider a line.

The file is ordinary JSON (``{"schema": N, "chains": {chain: {"providers": {name: ...}}}}``),
laid out so that each provider's entry sits alone on its own line::

    {"schema":1,"chains":{
    "chain":{"providers":{
    "anthropic":{...},
    "openai":{...}
    }}
    }}

Because of that layout an update re-encodes only the providers it changed (and of those only
the new history entries: see :mod:`._encode`) and copies the others' text as it was. A file
in any other layout (hand-edited, or written by an older failover) is read the same way; its
providers are simply re-encoded on the next write.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from ..state import (
    DECODE_ERRORS,
    SCHEMA_VERSION,
    ChainState,
    ForeignDocument,
    migrate,
)
from ._encode import ENCODE, encode_provider

_HEAD = b'{"schema":%d,"chains":{' % SCHEMA_VERSION
_CHAIN_HEAD = b':{"providers":{'


def _key(name: str) -> bytes:
    return ENCODE(name).encode()


@dataclass(slots=True)
class Document:
    """A parsed state file: every chain's providers as JSON text, decoded on demand.

    ``decoded`` holds chains already turned into :class:`ChainState`; they are never handed
    to callers (they get copies), so they always match ``texts``.
    """

    data: bytes = b""
    texts: dict[str, dict[str, bytes]] = field(default_factory=dict)
    raw: dict[str, dict[str, Any]] = field(default_factory=dict)
    decoded: dict[str, ChainState] = field(default_factory=dict)

    def chain(self, name: str) -> ChainState:
        """The chain's state (empty if absent); raise ForeignDocument if it is malformed."""
        state = self.decoded.get(name)
        if state is None:
            providers = self.raw.get(name)
            if providers is None:
                return ChainState()
            try:
                state = ChainState.from_dict({"providers": providers})
            except DECODE_ERRORS as exc:
                raise ForeignDocument(f"malformed state document: {exc}") from None
            self.decoded[name] = state
        return state

    def with_chain(self, name: str, state: ChainState, changed: Collection[str]) -> Document:
        """A new document with chain ``name`` replaced by ``state``. Only the ``changed``
        providers are re-encoded; the others keep the text they had."""
        old = self.texts.get(name, {})
        before = self.decoded.get(name, ChainState()).providers
        texts = {
            p: old[p]
            if p in old and p not in changed
            else encode_provider(s, before.get(p), old.get(p))
            for p, s in state.providers.items()
        }
        all_texts = dict(self.texts)
        raw = dict(self.raw)
        decoded = dict(self.decoded)
        raw.pop(name, None)
        if texts:
            all_texts[name] = texts
            decoded[name] = state
        else:
            all_texts.pop(name, None)
            decoded.pop(name, None)
        return Document(render(all_texts), all_texts, raw, decoded)


def render(texts: dict[str, dict[str, bytes]]) -> bytes:
    """The file's bytes for these chains (see the module docstring for the layout)."""
    parts = [_HEAD]
    for c, (name, providers) in enumerate(texts.items()):
        parts.append(b",\n" if c else b"\n")
        parts.append(_key(name) + _CHAIN_HEAD)
        lines = [b"\n" + _key(p) + b":" + text for p, text in providers.items()]
        parts.append(b",".join(lines))
        parts.append(b"\n}}")
    parts.append(b"\n}}\n")
    return b"".join(parts)


def parse(data: bytes) -> Document:
    """Read a state file's bytes. Raise ForeignDocument if it is not a failover state
    document (or is corrupt), FutureSchema if a newer failover wrote it."""
    try:
        doc = json.loads(data)
    except RecursionError:
        raise ForeignDocument("not valid JSON (nested too deeply)") from None
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise ForeignDocument(f"not valid JSON ({_one_line(exc)})") from None
    doc = migrate(doc)
    raw: dict[str, dict[str, Any]] = {}
    for name, chain in doc["chains"].items():
        providers = chain.get("providers", {}) if isinstance(chain, dict) else None
        if not isinstance(providers, dict) or not all(
            isinstance(p, dict) for p in providers.values()
        ):
            raise ForeignDocument(f"malformed state document: chain {name!r}")
        raw[name] = providers
    texts = _split_lines(data, raw)
    if texts is None:  # not our layout: encode each provider once, now
        texts = {c: {p: ENCODE(v).encode() for p, v in ps.items()} for c, ps in raw.items()}
    return Document(data, texts, raw)


def _split_lines(data: bytes, raw: dict[str, dict[str, Any]]) -> dict[str, dict[str, bytes]] | None:
    """Each provider's JSON text if ``data`` has exactly the layout :func:`render` writes.

    ``data`` already parsed as JSON into ``raw``; raw newlines cannot occur inside JSON
    strings, so when every structural line is where it should be and every provider line
    starts with that provider's key, the rest of the line is that provider's value.
    """
    lines = data.split(b"\n")
    if lines[0] != _HEAD or lines[-1] != b"" or lines[-2] != b"}}":
        return None
    texts: dict[str, dict[str, bytes]] = {}
    i = 1
    n_chains = len(raw)
    for c, (name, providers) in enumerate(raw.items()):
        comma = b"," if c < n_chains - 1 else b""
        if i >= len(lines) or lines[i] != _key(name) + _CHAIN_HEAD:
            return None
        i += 1
        chain_texts: dict[str, bytes] = {}
        n = len(providers)
        for j, p in enumerate(providers):
            prefix = _key(p) + b":"
            line = lines[i] if i < len(lines) else b""
            if not line.startswith(prefix):
                return None
            if j < n - 1:
                if not line.endswith(b","):
                    return None
                line = line[:-1]
            chain_texts[p] = line[len(prefix) :]
            i += 1
        if i >= len(lines) or lines[i] != b"}}" + comma:
            return None
        i += 1
        texts[name] = chain_texts
    if i != len(lines) - 2:
        return None
    return texts


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())
