"""failover: send a request through a priority-ordered chain of AI providers.

Library use::

    from failover_cli import FailoverRouter, load_config
    router = FailoverRouter(load_config("providers.yaml"))
    result = await router.route(prompt="Hello", max_tokens=100)
    result = await router.route(messages=[{"role": "user", "content": "Hi"}], tools=[...])

Everything a caller types is exported here (one list, :data:`_EXPORTS`); test helpers live in
:mod:`failover_cli.testing`. The package ships ``py.typed``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# The public names, each with the module defining it. They resolve lazily, so that
# `failover --help` does not import the whole core.
_EXPORTS: dict[str, str] = {
    "FailoverRouter": "router",
    "RouteStream": "router",
    "load_config": "config",
    "Config": "config",
    "DEFAULT_PROVIDERS": "config",
    "ProviderConfig": "types",
    "CompletionRequest": "types",
    "Completion": "types",
    "RouteResult": "types",
    "Usage": "types",
    "Cost": "types",
    "ErrorClass": "types",
    "Attempt": "types",
    "Segment": "types",
    "TextDelta": "types",
    "ToolCallDelta": "types",
    "StreamEnd": "types",
    "StreamDone": "types",
    "StreamSwitched": "types",
    "ParameterAdjusted": "types",
    "AttemptStarted": "types",
    "AttemptFailed": "types",
    "AttemptSucceeded": "types",
    "ProviderSkipped": "types",
    "BreakerTransition": "types",
    "Queued": "types",
    "Event": "types",
    "HealthResult": "types",
    "CapabilityOverrides": "types",
    "Message": "chat",
    "TextPart": "chat",
    "ImagePart": "chat",
    "ToolCall": "chat",
    "Tool": "chat",
    "ForcedTool": "chat",
    "ResponseFormat": "chat",
    "FinishReason": "chat",
    "Provider": "protocols",
    "StateStore": "protocols",
    "open_store": "store",
    "FailoverError": "errors",
    "ConfigError": "errors",
    "StateError": "errors",
    "ProviderError": "errors",
    "TransientError": "errors",
    "ProviderUnavailable": "errors",
    "InvalidRequest": "errors",
    "ContextLengthExceeded": "errors",
    "RoutingError": "errors",
    "AllProvidersFailed": "errors",
    "BudgetExceeded": "errors",
    "RequestRejected": "errors",
    "QueueFull": "errors",
}

__all__ = [  # noqa: RUF022 - in _EXPORTS order; tests/test_exports.py keeps the two equal
    "FailoverRouter",
    "RouteStream",
    "load_config",
    "Config",
    "DEFAULT_PROVIDERS",
    "ProviderConfig",
    "CompletionRequest",
    "Completion",
    "RouteResult",
    "Usage",
    "Cost",
    "ErrorClass",
    "Attempt",
    "Segment",
    "TextDelta",
    "ToolCallDelta",
    "StreamEnd",
    "StreamDone",
    "StreamSwitched",
    "ParameterAdjusted",
    "AttemptStarted",
    "AttemptFailed",
    "AttemptSucceeded",
    "ProviderSkipped",
    "BreakerTransition",
    "Queued",
    "Event",
    "HealthResult",
    "CapabilityOverrides",
    "Message",
    "TextPart",
    "ImagePart",
    "ToolCall",
    "Tool",
    "ForcedTool",
    "ResponseFormat",
    "FinishReason",
    "Provider",
    "StateStore",
    "open_store",
    "FailoverError",
    "ConfigError",
    "StateError",
    "ProviderError",
    "TransientError",
    "ProviderUnavailable",
    "InvalidRequest",
    "ContextLengthExceeded",
    "RoutingError",
    "AllProvidersFailed",
    "BudgetExceeded",
    "RequestRejected",
    "QueueFull",
    "__version__",
]

if TYPE_CHECKING:
    from .chat import (
        FinishReason,
        ForcedTool,
        ImagePart,
        Message,
        ResponseFormat,
        TextPart,
        Tool,
        ToolCall,
    )
    from .config import (
        DEFAULT_PROVIDERS,
        Config,
        load_config,
    )
    from .errors import (
        AllProvidersFailed,
        BudgetExceeded,
        ConfigError,
        ContextLengthExceeded,
        FailoverError,
        InvalidRequest,
        ProviderError,
        ProviderUnavailable,
        QueueFull,
        RequestRejected,
        RoutingError,
        StateError,
        TransientError,
    )
    from .protocols import (
        Provider,
        StateStore,
    )
    from .router import (
        FailoverRouter,
        RouteStream,
    )
    from .store import (
        open_store,
    )
    from .types import (
        Attempt,
        AttemptFailed,
        AttemptStarted,
        AttemptSucceeded,
        BreakerTransition,
        CapabilityOverrides,
        Completion,
        CompletionRequest,
        Cost,
        ErrorClass,
        Event,
        HealthResult,
        ParameterAdjusted,
        ProviderConfig,
        ProviderSkipped,
        Queued,
        RouteResult,
        Segment,
        StreamDone,
        StreamEnd,
        StreamSwitched,
        TextDelta,
        ToolCallDelta,
        Usage,
    )


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'failover_cli' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
