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

Chains are judged one by one: a malformed chain (a wrong shape, a value that does not
decode, a NaN or infinite number) is listed in :attr:`Document.malformed` and left out of
what is written next, while the others are kept. After the chains, ``"journal"`` may list
the ids of journal lines already merged into this file (see :mod:`._journal`).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from dataclasses import field
from typing import Any

from ..records import slotted
from ..state import SCHEMA_VERSION, ChainState, ForeignDocument, decode_chain, migrate
from ._encode import ENCODE, encode_provider

_HEAD = b'{"schema":%d,"chains":{' % SCHEMA_VERSION
_CHAIN_HEAD = b':{"providers":{'
MAX_JOURNAL_IDS = 100_000  # more merged ids than a journal can hold lines


def _key(name: str) -> bytes:
    return ENCODE(name).encode()


@slotted
class Document:
    """A parsed state file: every chain's providers as JSON text, decoded on demand.

    ``decoded`` holds chains already turned into :class:`ChainState`; they are never handed
    to callers (they get copies), so they always match ``texts``. ``malformed`` names the
    chains dropped as unreadable, with the reason; ``journal`` the merged journal lines.
    A document made by :meth:`with_chain` has no ``data`` until :meth:`finish` renders it.
    """

    data: bytes = b""
    texts: dict[str, dict[str, bytes]] = field(default_factory=dict)
    raw: dict[str, dict[str, Any]] = field(default_factory=dict)
    decoded: dict[str, ChainState] = field(default_factory=dict)
    malformed: dict[str, str] = field(default_factory=dict)
    journal: tuple[str, ...] = ()

    def chain(self, name: str) -> ChainState:
        """The chain's state (empty if absent). A chain that does not decode is moved from
        ``raw`` and ``texts`` to ``malformed`` and reads as empty."""
        state = self.decoded.get(name)
        if state is None:
            providers = self.raw.get(name)
            if providers is None:
                return ChainState()
            try:
                state = decode_chain({"providers": providers})
            except ForeignDocument as exc:
                self.malformed[name] = str(exc)
                del self.raw[name]
                self.texts.pop(name, None)
                return ChainState()
            self.decoded[name] = state
        return state

    def with_chain(self, name: str, state: ChainState, changed: Collection[str]) -> Document:
        """A new, unrendered document with chain ``name`` replaced by ``state``. Only the
        ``changed`` providers are re-encoded; the others keep the text they had."""
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
        return Document(b"", all_texts, raw, decoded, dict(self.malformed), self.journal)

    def finish(self, journal: Sequence[str]) -> Document:
        """This document rendered, recording ``journal`` as merged; malformed chains are
        left out."""
        ids = tuple(journal)
        return Document(render(self.texts, ids), self.texts, self.raw, self.decoded, {}, ids)


def render(texts: dict[str, dict[str, bytes]], journal: Sequence[str] = ()) -> bytes:
    """The file's bytes for these chains (see the module docstring for the layout)."""
    parts = [_HEAD]
    for c, (name, providers) in enumerate(texts.items()):
        parts.append(b",\n" if c else b"\n")
        parts.append(_key(name) + _CHAIN_HEAD)
        lines = [b"\n" + _key(p) + b":" + text for p, text in providers.items()]
        parts.append(b",".join(lines))
        parts.append(b"\n}}")
    parts.append(b"\n" + _tail(journal) + b"\n")
    return b"".join(parts)


def _tail(journal: Sequence[str]) -> bytes:
    """The last line: the end of the chains, and the merged journal ids if any."""
    if not journal:
        return b"}}"
    return b'},"journal":' + ENCODE(list(journal)).encode() + b"}"


class _NonFinite:
    """What ``NaN``, ``Infinity`` and ``-Infinity`` parse to: no number at all."""


_NON_FINITE = _NonFinite()


def parse(data: bytes) -> Document:
    """Read a state file's bytes. Raise ForeignDocument if it is not a failover state
    document (or is corrupt as a whole), FutureSchema if a newer failover wrote it; a
    malformed chain only lands in ``malformed``."""
    constants: list[str] = []

    def non_finite(name: str) -> _NonFinite:
        constants.append(name)
        return _NON_FINITE

    try:
        doc = json.loads(data, parse_constant=non_finite)
    except RecursionError:
        raise ForeignDocument("not valid JSON (nested too deeply)") from None
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise ForeignDocument(f"not valid JSON ({_one_line(exc)})") from None
    doc = migrate(doc)
    raw: dict[str, dict[str, Any]] = {}
    malformed: dict[str, str] = {}
    for name, chain in doc["chains"].items():
        providers = chain.get("providers", {}) if isinstance(chain, dict) else None
        if not isinstance(providers, dict) or not all(
            isinstance(p, dict) for p in providers.values()
        ):
            malformed[name] = "not a chain of provider objects"
        elif constants and _holds_non_finite(providers):
            malformed[name] = "a NaN or infinite number"
        else:
            raw[name] = providers
    journal = _journal_ids(doc.get("journal"))
    texts = None if malformed else _split_lines(data, raw, journal)
    if texts is None:  # not our layout: encode each provider once, now
        texts = {}
        for c, ps in list(raw.items()):
            try:
                texts[c] = {p: ENCODE(v).encode() for p, v in ps.items()}
            except (ValueError, TypeError, RecursionError) as exc:  # 1e400 parses as inf
                malformed[c] = _one_line(exc) or type(exc).__name__
                del raw[c]
    return Document(data, texts, raw, {}, malformed, journal)


def _holds_non_finite(value: Any, depth: int = 0) -> bool:
    if value is _NON_FINITE:
        return True
    if depth > 64:
        return True
    if isinstance(value, dict):
        return any(_holds_non_finite(v, depth + 1) for v in value.values())
    if isinstance(value, list):
        return any(_holds_non_finite(v, depth + 1) for v in value)
    return False


def _journal_ids(value: Any) -> tuple[str, ...]:
    """The merged journal ids as stored; nothing if the entry is missing or malformed."""
    if (
        isinstance(value, list)
        and len(value) <= MAX_JOURNAL_IDS
        and all(isinstance(v, str) for v in value)
    ):
        return tuple(value)
    return ()


def _split_lines(
    data: bytes, raw: dict[str, dict[str, Any]], journal: Sequence[str]
) -> dict[str, dict[str, bytes]] | None:
    """Each provider's JSON text if ``data`` has exactly the layout :func:`render` writes.

    ``data`` already parsed as JSON into ``raw``; raw newlines cannot occur inside JSON
    strings, so when every structural line is where it should be and every provider line
    starts with that provider's key, the rest of the line is that provider's value.
    """
    lines = data.split(b"\n")
    if lines[0] != _HEAD or lines[-1] != b"" or lines[-2] != _tail(journal):
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
