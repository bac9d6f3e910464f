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

import httpx

from ..errors import ConfigError
from ..types import ProviderConfig
from ._base import BaseProvider, KindDefaults
from ._client import ClientSet, make_client
from .anthropic import AnthropicProvider
from .gemini import GeminiProvider
from .ollama import OllamaProvider
from .openai import OpenAIProvider

ADAPTERS: dict[str, type[BaseProvider]] = {
    "anthropic": AnthropicProvider,
    "openai": OpenAIProvider,
    "ollama": OllamaProvider,
    "gemini": GeminiProvider,
}

DEFAULTS: dict[str, KindDefaults] = {kind: cls.defaults for kind, cls in ADAPTERS.items()}
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
    "create_provider",
    "make_client",
]


def create_provider(
    config: ProviderConfig,
    client: httpx.AsyncClient | None = None,
    env: Mapping[str, str] | None = None,
) -> BaseProvider:
    """The adapter for ``config.kind``. Without ``client`` the adapter makes (and on
    ``aclose()`` closes) its own; ``env`` (default ``os.environ``) is where keys are read."""
    adapter = ADAPTERS.get(config.kind)
    if adapter is None:
        raise ConfigError(
            f"unknown provider kind {config.kind!r} (expected one of: {', '.join(ADAPTERS)})",
            path=f"providers.{config.name}.kind",
        )
    return adapter(config, client=client, env=env)
