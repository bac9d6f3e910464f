"""failover: send a prompt through a priority-ordered chain of AI providers.

Library use::

    from failover_cli import FailoverRouter, load_config
    router = FailoverRouter(load_config("providers.yaml"))
    result = await router.route(prompt="Hello", max_tokens=100)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Exported names resolve lazily so that `failover --help` does not import the whole core.
_EXPORTS = {
    "FailoverRouter": "router",
    "RouteStream": "router",
    "load_config": "config",
    "Config": "config",
    "DEFAULT_PROVIDERS": "config",
    "ProviderConfig": "types",
    "RouteResult": "types",
    "Usage": "types",
    "ErrorClass": "types",
    "FailoverError": "errors",
    "ConfigError": "errors",
    "ProviderError": "errors",
    "AllProvidersFailed": "errors",
    "RequestRejected": "errors",
    "QueueFull": "errors",
}

__all__ = [  # noqa: RUF022
    "FailoverRouter",
    "RouteStream",
    "load_config",
    "Config",
    "DEFAULT_PROVIDERS",
    "ProviderConfig",
    "RouteResult",
    "Usage",
    "ErrorClass",
    "FailoverError",
    "ConfigError",
    "ProviderError",
    "AllProvidersFailed",
    "RequestRejected",
    "QueueFull",
    "__version__",
]

if TYPE_CHECKING:
    from .config import DEFAULT_PROVIDERS, Config, load_config
    from .errors import (
        AllProvidersFailed,
        ConfigError,
        FailoverError,
        ProviderError,
        QueueFull,
        RequestRejected,
    )
    from .router import FailoverRouter, RouteStream
    from .types import ErrorClass, ProviderConfig, RouteResult, Usage


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'failover_cli' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
