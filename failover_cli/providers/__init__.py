"""Provider adapters: one per API family, each implementing ``failover_cli.protocols.Provider``.

::

    client = make_client()                       # share one pooled client between adapters
    provider = create_provider(config, client)   # env defaults to os.environ, read per request
    completion = await provider.complete(CompletionRequest("Hi"), timeout=30)

Every failure is raised as a :class:`failover_cli.errors.ProviderError` subclass; no httpx type,
and no other exception, escapes an adapter (see :mod:`._http`). The ``reason`` of a transient
failure names what happened: ``connect`` (refused, or the connect timeout), ``first_token_timeout``
(no first token, or no response head of a whole answer, in time), ``stall`` (a stream went
silent after its first token), ``timeout`` (the attempt's whole budget), ``truncated`` (cut, or
ended before reporting its finish), ``malformed`` (unreadable), ``oversized`` (past a read
limit). Before any request: ``no_key`` and ``bad_key`` (a key, or a ``${VAR}`` header, unset or
unsendable), ``bad_header``. A 400 refusing a final assistant turn is ``prefill_unsupported``.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib import import_module
from typing import TYPE_CHECKING, Any

import httpx

from ..errors import ConfigError
from ..types import KINDS, ProviderConfig
from ._base import BaseProvider, KindDefaults
from ._client import ClientSet, make_client

if TYPE_CHECKING:
    from .anthropic import AnthropicProvider
    from .gemini import GeminiProvider
    from .ollama import OllamaProvider
    from .openai import OpenAIProvider

# Each kind's adapter class, by module: imported only when a provider of that kind is built,
# so a one-shot `ask` does not load the adapters its chain does not use.
_CLASSES: dict[str, tuple[str, str]] = {
    "anthropic": ("anthropic", "AnthropicProvider"),
    "openai": ("openai", "OpenAIProvider"),
    "ollama": ("ollama", "OllamaProvider"),
    "gemini": ("gemini", "GeminiProvider"),
}

DEFAULTS: dict[str, KindDefaults] = {kind: KindDefaults.of(kind) for kind in KINDS}
"""Per kind: the default ``base_url`` and ``api_key_env`` (None: no key needed)."""

__all__ = [
    "ADAPTERS",
    "DEFAULTS",
    "AnthropicProvider",
    "BaseProvider",
    "ClientSet",
    "GeminiProvider",
    "KindDefaults",
    "OllamaProvider",
    "OpenAIProvider",
    "adapter_class",
    "create_provider",
    "make_client",
]


def adapter_class(kind: str) -> type[BaseProvider]:
    """The adapter class for ``kind`` (imported now if it was not yet)."""
    module, name = _CLASSES[kind]
    cls: type[BaseProvider] = getattr(import_module(f".{module}", __name__), name)
    return cls


def __getattr__(name: str) -> Any:
    if name == "ADAPTERS":  # every kind's class: imports all four
        return {kind: adapter_class(kind) for kind in _CLASSES}
    for kind, (_, cls) in _CLASSES.items():
        if name == cls:
            return adapter_class(kind)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def create_provider(
    config: ProviderConfig,
    client: httpx.AsyncClient | None = None,
    env: Mapping[str, str] | None = None,
) -> BaseProvider:
    """The adapter for ``config.kind``. Without ``client`` the adapter makes (and on
    ``aclose()`` closes) its own; ``env`` (default ``os.environ``) is where keys are read."""
    if config.kind not in _CLASSES:
        raise ConfigError(
            f"unknown provider kind {config.kind!r} (expected one of: {', '.join(_CLASSES)})",
            path=f"providers.{config.name}.kind",
        )
    return adapter_class(config.kind)(config, client=client, env=env)
