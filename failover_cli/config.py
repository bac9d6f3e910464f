"""Loading and validating ``providers.yaml``.

Errors name the file, the line and the key path (``providers.yaml:7: providers[1].timeout:
expected a number, got "fast"``); every problem in a file is collected, not just the first.
The YAML node tree is walked directly because no decoding library reports source lines.
"""

from __future__ import annotations

import difflib
import math
import os
import re
import types as _pytypes
from collections.abc import Mapping, Sequence
from dataclasses import MISSING, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from .breaker import MAX_OUTCOMES, BreakerPolicy
from .errors import ConfigError
from .records import frozen
from .retry import RetryPolicy
from .scoring import Weights
from .types import KINDS, Cost, ProviderConfig


@frozen
class RoutingConfig:
    strategy: Literal["priority", "score"] = "priority"
    weights: Weights = field(default_factory=Weights)
    hedge_after_ms: float | None = None


@frozen
class QueueConfig:
    max_wait: float = 60.0
    max_size: int = 1000


@frozen
class StateConfig:
    path: str | None = None
    url: str | None = None
    history: int = 500


@frozen
class LogConfig:
    """The history database (``log: false`` is short for ``log: {enabled: false}``)."""

    enabled: bool = True
    path: str | None = None  # default: history.db in the user data directory
    max_entries: int = 10_000  # oldest entries are pruned beyond this
    max_mb: float = 200.0  # and beyond this database size


@frozen
class BudgetLimit:
    """Spend limits in US dollars; None is no limit."""

    daily_usd: float | None = None
    monthly_usd: float | None = None


@frozen
class BudgetConfig:
    """Spend limits for the whole chain, and optionally per provider (UTC days and months)."""

    daily_usd: float | None = None
    monthly_usd: float | None = None
    providers: dict[str, BudgetLimit] = field(default_factory=dict)

    @property
    def enabled(self) -> bool:
        limits = [self.daily_usd, self.monthly_usd]
        limits += [v for b in self.providers.values() for v in (b.daily_usd, b.monthly_usd)]
        return any(v is not None for v in limits)


@frozen
class ServeConfig:
    """The gateway (``failover serve``)."""

    host: str = "127.0.0.1"
    port: int = 8400
    keys_env: str | None = None  # an environment variable holding gateway keys
    keys_file: str | None = None  # a file of sha256-hashed gateway keys, one per line
    passthrough_keys: bool = False  # forward a client's own provider key upstream
    unknown_model: Literal["default", "reject"] = "default"
    max_body_bytes: int = 16 * 1024 * 1024
    max_messages: int = 5_000
    max_concurrency: int = 64  # requests served at once
    max_queue: int = 256  # requests waiting for a slot; beyond this, 429
    rate_per_minute: float | None = None  # per gateway key
    log: bool = False  # record requests in the history database


@frozen
class Config:
    """The whole configuration. ``chain`` names the state this chain keeps."""

    providers: tuple[ProviderConfig, ...]
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    breaker: BreakerPolicy = field(default_factory=BreakerPolicy)
    routing: RoutingConfig = field(default_factory=RoutingConfig)
    queue: QueueConfig = field(default_factory=QueueConfig)
    state: StateConfig = field(default_factory=StateConfig)
    log: LogConfig = field(default_factory=LogConfig)
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    serve: ServeConfig = field(default_factory=ServeConfig)
    models: dict[str, tuple[str, ...]] = field(default_factory=dict)  # alias -> provider names
    chain: str = "default"
    source: str | None = None  # the file it came from; None for built-in defaults

    def prices(self) -> dict[str, float | None]:
        """Each provider's price per million tokens (input + output); None if unknown."""
        return {p.name: p.cost.per_mtok if p.cost else None for p in self.providers}

    def priorities(self) -> list[int]:
        """Each provider's priority; unset means its 1-based position in the list."""
        return [
            p.priority if p.priority is not None else i + 1 for i, p in enumerate(self.providers)
        ]


DEFAULT_BASE_URLS = {
    "anthropic": "https://api.anthropic.com",
    "openai": "https://api.openai.com",
    "ollama": "http://localhost:11434",
    "gemini": "https://generativelanguage.googleapis.com",
}
DEFAULT_KEY_ENV = {
    "anthropic": "ANTHROPIC_API_KEY",
    "openai": "OPENAI_API_KEY",
    "ollama": None,
    "gemini": "GEMINI_API_KEY",
}

# Current models as the official SDKs list them (anthropic 2.16, openai 3.57);
# claude-sonnet-4-5 reached end of life on 2026-11-30. Prices are the list prices per million
# tokens when chosen: set `cost:` in providers.yaml for what you pay.
DEFAULT_PROVIDERS: tuple[ProviderConfig, ...] = (
    ProviderConfig(
        name="claude",
        kind="anthropic",
        model="claude-sonnet-5-5",
        api_key_env="ANTHROPIC_API_KEY",
        cost=Cost(input_per_mtok=3.0, output_per_mtok=15.0),
    ),
    ProviderConfig(
        name="gpt",
        kind="openai",
        model="gpt-5.4-mini",
        api_key_env="OPENAI_API_KEY",
        cost=Cost(input_per_mtok=0.25, output_per_mtok=2.0),
    ),
    ProviderConfig(
        name="llama",
        kind="ollama",
        model="llama3.2",
        base_url="http://localhost:11434",
        cost=Cost(),
    ),
)

# Numeric bounds: (minimum, minimum is exclusive, maximum or None).
_BOUNDS: dict[str, tuple[float, bool, float | None]] = {
    "timeout": (0, True, None),
    "connect_timeout": (0, True, None),
    "first_token_timeout": (0, True, None),
    "idle_timeout": (0, True, None),
    "failover_retry_after": (0, False, None),
    "cooldown_ratio": (0, False, 10),
    "priority": (0, False, None),
    "input_per_mtok": (0, False, None),
    "output_per_mtok": (0, False, None),
    "cached_input_per_mtok": (0, False, None),
    "attempts": (1, False, None),
    "base_delay": (0, False, None),
    "max_delay": (0, False, None),
    "max_retry_after": (0, False, None),
    "failure_threshold": (1, False, None),
    "window": (0, True, None),
    "failure_rate": (0, True, 1),
    "min_requests": (1, False, MAX_OUTCOMES),  # never reachable beyond the kept outcomes
    "cooldown": (0, False, None),
    "max_cooldown": (0, False, None),
    "half_open_probes": (1, False, None),
    "slow_call_ms": (0, True, None),
    "cold_start_wait": (0, False, None),
    "latency": (0, False, None),
    "reliability": (0, False, None),
    "cost": (0, False, None),
    "hedge_after_ms": (0, False, None),
    "max_wait": (0, False, None),
    "max_size": (0, False, None),
    "history": (0, False, None),
    "max_entries": (1, False, None),
    "max_mb": (0, True, None),
    "daily_usd": (0, False, None),
    "monthly_usd": (0, False, None),
    "port": (0, False, 65535),
    "max_body_bytes": (1, False, None),
    "max_messages": (1, False, None),
    "max_concurrency": (1, False, None),
    "max_queue": (0, False, None),
    "rate_per_minute": (0, True, None),
}


MAX_CONFIG_BYTES = 1 << 20  # a providers.yaml is a few KB; anything near this is not one

# What an environment variable name looks like; anything else in `api_key_env` is most likely a
# key pasted there by mistake, and is never echoed.
# Upper case only: a lower-case word with underscores is as likely a key (Groq's gsk_...).
ENV_NAME_RE = re.compile(r"[A-Z_][A-Z0-9_]*")
_URL_KEYS = {"base_url": ("http", "https"), "proxy": ("http", "https")}


def _yaml() -> Any:
    import yaml  # deferred: ~20 ms, only needed when a file is read

    return yaml


class _Decoder:
    """Turns a YAML node tree into config dataclasses, collecting every problem."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.problems: list[ConfigError] = []

    def fail(self, node: Any, path: str, message: str) -> None:
        line = node.start_mark.line + 1 if node is not None else None
        self.problems.append(ConfigError(message, file=self.file, line=line, path=path or None))

    def describe(self, node: Any) -> str:
        if node.id == "scalar":
            return f'"{node.value}"' if node.tag.endswith(":str") else node.value
        return {"mapping": "a mapping", "sequence": "a list"}.get(node.id, node.id)

    def scalar(self, node: Any) -> Any:
        """The Python value of a scalar node; an unknown or unsafe tag yields ``_MISSING``
        (and a problem), never an exception."""
        yaml = _yaml()
        try:
            return yaml.SafeLoader(stream="").construct_object(node, deep=True)
        except (yaml.YAMLError, ValueError, TypeError, OverflowError):
            return _MISSING

    def value(self, node: Any, tp: Any, path: str) -> Any:
        origin = get_origin(tp)
        if origin in (Union, _pytypes.UnionType):
            args = [a for a in get_args(tp) if a is not type(None)]
            if node.id == "scalar" and node.tag.endswith(":null"):
                return None
            return self.value(node, args[0], path)
        if origin is Literal:
            options = get_args(tp)
            v = self.scalar(node) if node.id == "scalar" else None
            if v not in options:
                hint = _did_you_mean(str(v), [str(o) for o in options])
                self.fail(
                    node,
                    path,
                    f"expected one of {', '.join(map(str, options))}, got "
                    f"{self.describe(node)}{hint}",
                )
                return _MISSING
            return v
        if tp == tuple[tuple[str, str], ...]:
            return self.pairs(node, path)
        if origin is dict:
            return self.mapping(node, get_args(tp)[1], path)
        if origin is tuple:
            if node.id != "sequence":
                self.fail(node, path, f"expected a list, got {self.describe(node)}")
                return _MISSING
            item = get_args(tp)[0]
            out = [self.value(n, item, f"{path}[{i}]") for i, n in enumerate(node.value)]
            return tuple(o for o in out if o is not _MISSING)
        if is_dataclass(tp):
            if node.id == "scalar" and "enabled" in {f.name for f in fields(tp)}:
                on = self.value(node, bool, path)  # `log: false` for `log: {enabled: false}`
                make: Any = tp
                return _MISSING if on is _MISSING else make(enabled=on)
            return self.record(node, tp, path)
        if node.id != "scalar" or node.tag.endswith(":null"):
            self.fail(
                node,
                path,
                f"expected {_TYPE_NAMES.get(tp, tp.__name__)}, got "
                f"{self.describe(node) if node.id != 'scalar' else 'nothing'}",
            )
            return _MISSING
        v = self.scalar(node)
        if v is _MISSING:
            self.fail(node, path, f"cannot read a value tagged {node.tag}")
            return _MISSING
        if isinstance(v, float) and not math.isfinite(v):
            self.fail(node, path, f"expected a finite number, got {node.value}")
            return _MISSING
        if tp is float and isinstance(v, int | float) and not isinstance(v, bool):
            return float(v)
        if tp is int and isinstance(v, int) and not isinstance(v, bool):
            return v
        if tp is str and isinstance(v, str | int | float) and not isinstance(v, bool):
            return str(v)
        if tp is bool and isinstance(v, bool):
            return v
        self.fail(
            node, path, f"expected {_TYPE_NAMES.get(tp, tp.__name__)}, got {self.describe(node)}"
        )
        return _MISSING

    def mapping(self, node: Any, item: Any, path: str) -> Any:
        """A mapping of names to values of type ``item``."""
        if node.id != "mapping":
            self.fail(node, path, f"expected a mapping, got {self.describe(node)}")
            return _MISSING
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = self.value(key_node, str, path)
            if key is _MISSING:
                continue
            if key in out:
                self.fail(key_node, f"{path}.{key}", "duplicate key")
                continue
            value = self.value(value_node, item, f"{path}.{key}")
            if value is not _MISSING:
                out[key] = value
        return out

    def pairs(self, node: Any, path: str) -> Any:
        """A mapping of strings to strings (HTTP headers), as ordered pairs."""
        if node.id != "mapping":
            self.fail(node, path, f"expected a mapping, got {self.describe(node)}")
            return _MISSING
        out = []
        for key_node, value_node in node.value:
            key = self.value(key_node, str, path)
            value = self.value(value_node, str, f"{path}.{key}")
            if key is _MISSING or value is _MISSING:
                continue
            if not _HEADER_NAME_RE.fullmatch(key):
                self.fail(key_node, f"{path}.{key}", "not a valid HTTP header name")
            elif any(c in value for c in "\r\n\0"):
                self.fail(value_node, f"{path}.{key}", "a header value cannot hold a line break")
            else:
                out.append((key, value))
        return tuple(out)

    def check(self, key: str, node: Any, path: str, v: Any) -> bool:
        """Per-key rules beyond the type: numeric bounds, URL schemes, variable names."""
        if key in _BOUNDS and isinstance(v, int | float):
            lo, exclusive, hi = _BOUNDS[key]
            if v < lo or (exclusive and v == lo) or (hi is not None and v > hi):
                rng = f"> {lo:g}" if exclusive else f">= {lo:g}"
                if hi is not None:
                    rng += f" and <= {hi:g}"
                self.fail(node, path, f"must be {rng}, got {v:g}")
                return False
        if key in _URL_KEYS and isinstance(v, str):
            scheme, sep, rest = v.partition("://")
            if not sep or scheme.lower() not in _URL_KEYS[key] or not rest.strip("/"):
                schemes = " or ".join(f"{s}://" for s in _URL_KEYS[key])
                self.fail(node, path, f"expected a URL starting with {schemes}")
                return False
        if key == "api_key_env" and isinstance(v, str) and not ENV_NAME_RE.fullmatch(v):
            # Never echo it: this is usually the key itself, pasted in the wrong place.
            self.fail(
                node,
                path,
                "expected the NAME of an environment variable holding the key (upper-case "
                "letters, digits, _), not the key itself: keys never live in this file",
            )
            return False
        return True

    def record(self, node: Any, cls: Any, path: str) -> Any:
        if node.id != "mapping":
            self.fail(node, path, f"expected a mapping, got {self.describe(node)}")
            return _MISSING
        hints = get_type_hints(cls)
        known = {f.name: f for f in fields(cls) if f.name != "source"}
        values: dict[str, Any] = {}
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            sub = f"{path}.{key}" if path else key
            if key in seen:
                self.fail(key_node, sub, "duplicate key")
                continue
            seen.add(key)
            if key not in known:
                self.fail(key_node, sub, "unknown key" + _did_you_mean(key, list(known)))
                continue
            v = self.value(value_node, hints[key], sub)
            if v is _MISSING or not self.check(key, value_node, sub, v):
                continue
            values[key] = v
        missing = [
            f.name
            for f in known.values()
            if f.default is MISSING
            and f.default_factory is MISSING
            and f.name not in values
            and f.name not in seen
        ]
        for name in missing:
            self.fail(node, f"{path}.{name}" if path else name, "required key is missing")
        if missing or any(k not in values for k in seen if k in known):
            return _MISSING
        try:
            return cls(**values)
        except (TypeError, ValueError) as exc:  # pragma: no cover - guarded above
            self.fail(node, path, str(exc))
            return _MISSING


_MISSING = object()
_HEADER_NAME_RE = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110 token
_TYPE_NAMES = {float: "a number", int: "a whole number", str: "a string", bool: "true or false"}


def _did_you_mean(word: str, options: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _check_chain(decoder: _Decoder, root: Any, config: Any) -> None:
    """Cross-field rules: unique names, at least one provider, cooldown ordering."""
    prov_nodes = _child(root, "providers")
    items = prov_nodes.value if prov_nodes is not None and prov_nodes.id == "sequence" else []
    seen: dict[str, int] = {}
    for i, node in enumerate(items):
        name_node = _child(node, "name")
        if name_node is None or name_node.id != "scalar":
            continue
        if name_node.value in seen:
            decoder.fail(
                name_node,
                f"providers[{i}].name",
                f"duplicate provider name "
                f'"{name_node.value}" (also providers[{seen[name_node.value]}])',
            )
        seen.setdefault(name_node.value, i)
    if prov_nodes is not None and prov_nodes.id == "sequence" and not items:
        decoder.fail(prov_nodes, "providers", "at least one provider is required")
    if config is not _MISSING:
        names = {p.name for p in config.providers}
        for section, refs in (
            ("models", {f"models.{a}": list(ns) for a, ns in config.models.items()}),
            ("budget", {"budget.providers": list(config.budget.providers)}),
        ):
            for where, listed in refs.items():
                for n in listed:
                    if n not in names:
                        node = _child(root, section) or root
                        hint = _did_you_mean(n, sorted(names))
                        decoder.fail(node, where, f'no provider named "{n}"{hint}')
        for alias, listed in config.models.items():
            if not listed:
                decoder.fail(_child(root, "models") or root, f"models.{alias}", "an empty chain")
    if config is not _MISSING and config.breaker.max_cooldown < config.breaker.cooldown:
        decoder.fail(
            _child(_child(root, "breaker"), "max_cooldown")
            or _child(_child(root, "breaker"), "cooldown")
            or root,
            "breaker.max_cooldown",
            "must be >= breaker.cooldown",
        )


def _child(node: Any, key: str) -> Any:
    if node is None or node.id != "mapping":
        return None
    for k, v in node.value:
        if k.value == key:
            return v
    return None


def parse_config(text: str, file: str = "<string>") -> Config:
    """Parse and validate configuration text; raise ConfigError listing every problem."""
    yaml = _yaml()
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except RecursionError:
        raise ConfigError("invalid YAML: nested too deeply", file=file) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(
            f"invalid YAML: {problem}", file=file, line=mark.line + 1 if mark else None
        ) from None
    if root is None:
        raise ConfigError("the file is empty: it needs a 'providers' list", file=file)
    decoder = _Decoder(file)
    try:
        config = decoder.record(root, Config, "")
    except RecursionError:
        raise ConfigError("invalid YAML: nested too deeply", file=file) from None
    _check_chain(decoder, root, config)
    if decoder.problems:
        decoder.problems.sort(key=lambda p: p.line or 0)
        first = decoder.problems[0]
        raise ConfigError(
            first.message,
            file=first.file,
            line=first.line,
            path=first.path,
            problems=decoder.problems,
        )
    return _with_source(config, file)


def _with_source(config: Config, file: str) -> Config:
    from dataclasses import replace

    return replace(config, source=file)


def config_dir() -> Path:
    from .paths import config_dir as user_config_dir

    return user_config_dir()


def find_config(
    explicit: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None
) -> Path | None:
    """Where the configuration comes from: ``explicit``, ``$FAILOVER_CONFIG``,
    ``./providers.yaml``, the user config dir; None means the built-in defaults."""
    env = os.environ if env is None else env
    if explicit:
        return Path(explicit)
    if env.get("FAILOVER_CONFIG"):
        return Path(env["FAILOVER_CONFIG"])
    for candidate in (Path("providers.yaml"), config_dir() / "providers.yaml"):
        if candidate.is_file():
            return candidate
    return None


def load_config(
    path: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    *,
    cache_dir: Path | None = None,
) -> Config:
    """Load the configuration from ``path`` or by discovery; raise ConfigError on problems.
    With ``cache_dir``, an unchanged file is read from a cache of validated configurations
    there (see :mod:`failover_cli.config_cache`) instead of being parsed again."""
    found = find_config(path, env)
    if found is None:
        return Config(providers=DEFAULT_PROVIDERS)
    try:
        data = _read_bounded(found)
        text = data.decode("utf-8")
    except FileNotFoundError:
        raise ConfigError("no such file", file=str(found)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"cannot read: {getattr(exc, 'strerror', None) or exc}", file=str(found)
        ) from None
    if cache_dir is None:
        return parse_config(text, str(found))
    from . import config_cache

    k = config_cache.key(data, _fingerprint())
    cached = config_cache.read(cache_dir, found, k, Config)
    if cached is not None:
        return _with_source(cached, str(found))
    config = parse_config(text, str(found))
    config_cache.write(cache_dir, found, k, config)
    return config


def _read_bounded(path: Path) -> bytes:
    """The file's bytes, refusing directories and anything larger than a configuration."""
    with open(path, "rb") as f:  # a FIFO (`--config <(...)`) is fine: it is read, bounded
        data = f.read(MAX_CONFIG_BYTES + 1)
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"larger than {MAX_CONFIG_BYTES // 1024} KiB: not a configuration", file=str(path)
        )
    return data


def _fingerprint() -> str:
    """Everything besides the file that shapes a parsed configuration: failover's version,
    the defaults and the validation bounds. A cached entry made under others never matches."""
    from . import __version__

    blank = ProviderConfig(name="", kind="openai", model="")
    bounds = sorted(_BOUNDS.items())
    return f"{__version__}|{Config(providers=())!r}|{blank!r}|{bounds!r}|{sorted(KINDS)!r}"


def as_config(value: Config | Sequence[ProviderConfig]) -> Config:
    """Accept a Config or a plain list of provider configs (defaults for everything else)."""
    if isinstance(value, Config):
        return value
    providers = tuple(value)
    if not all(isinstance(p, ProviderConfig) for p in providers):
        raise ConfigError("expected a Config or a list of ProviderConfig")
    names = [p.name for p in providers]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"duplicate provider name(s): {', '.join(dupes)}")
    if not providers:
        raise ConfigError("at least one provider is required")
    return Config(providers=providers)


def base_url(p: ProviderConfig) -> str:
    return (p.base_url or DEFAULT_BASE_URLS[p.kind]).rstrip("/")


def key_env(p: ProviderConfig) -> str | None:
    return p.api_key_env or DEFAULT_KEY_ENV.get(p.kind)


def fingerprint(p: ProviderConfig, env: Mapping[str, str]) -> str:
    """A short identity of what a provider-class verdict (bad key, no quota, unknown model)
    was about: kind, endpoint, model and a digest of the key, never the key itself."""
    import hashlib

    name = key_env(p)
    key = (env.get(name) or "").strip() if name else ""
    key_digest = hashlib.sha256(key.encode("utf-8", "replace")).hexdigest() if key else "-"
    identity = f"{p.kind}|{base_url(p)}|{p.model}|{key_digest}"
    return hashlib.sha256(identity.encode()).hexdigest()[:16]


assert set(DEFAULT_BASE_URLS) == set(KINDS)
