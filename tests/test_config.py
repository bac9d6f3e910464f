"""providers.yaml: discovery order, decoding, and validation messages `file:line: key.path:
problem` (every problem collected). Also the router's acceptance of plain provider lists."""

from __future__ import annotations

from pathlib import Path

import pytest
from fakes import ScriptedProvider

import failover_cli.config as config_module
from failover_cli import DEFAULT_PROVIDERS as EXPORTED_DEFAULTS
from failover_cli.breaker import BreakerPolicy
from failover_cli.clock import VirtualClock
from failover_cli.config import (
    DEFAULT_PROVIDERS,
    Config,
    as_config,
    base_url,
    find_config,
    key_env,
    load_config,
    parse_config,
)
from failover_cli.errors import AllProvidersFailed, ConfigError
from failover_cli.retry import RetryPolicy
from failover_cli.router import FailoverRouter
from failover_cli.scoring import Weights
from failover_cli.types import Cost, ProviderConfig

FULL = """\
providers:                  # tried in this order; the first is the primary
  - name: claude
    kind: anthropic
    model: claude-sonnet-4-5
    base_url: https://api.anthropic.com
    api_key_env: ANTHROPIC_API_KEY
    timeout: 30
    priority: 1
    cost: {input_per_mtok: 3.0, output_per_mtok: 15.0}
  - name: local
    kind: ollama
    model: llama3.2
retry:   {attempts: 4, base_delay: 0.25, max_delay: 4, max_retry_after: 20}
breaker: {failure_threshold: 5, window: 120, failure_rate: 0.25, min_requests: 8,
          cooldown: 10, max_cooldown: 300, half_open_probes: 2, slow_call_ms: 9000,
          cold_start_wait: 0.5}
routing: {strategy: score, weights: {latency: 1, reliability: 2, cost: 0}, hedge_after_ms: 750}
queue:   {max_wait: 15, max_size: 7}
state:   {path: /tmp/failover-state.json}
"""

MINIMAL = "providers:\n  - {name: only, kind: openai, model: gpt-4o-mini}\n"


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "providers.yaml")
    return [str(p) for p in info.value.problems]


# --- decoding ----------------------------------------------------------------------------------


def test_full_file_decodes_every_section():
    c = parse_config(FULL, "providers.yaml")
    assert c.source == "providers.yaml"
    assert c.providers == (
        ProviderConfig(
            name="claude",
            kind="anthropic",
            model="claude-sonnet-4-5",
            base_url="https://api.anthropic.com",
            api_key_env="ANTHROPIC_API_KEY",
            timeout=30.0,
            priority=1,
            cost=Cost(3.0, 15.0),
        ),
        ProviderConfig(name="local", kind="ollama", model="llama3.2"),
    )
    assert c.retry == RetryPolicy(attempts=4, base_delay=0.25, max_delay=4.0, max_retry_after=20)
    assert c.breaker == BreakerPolicy(
        failure_threshold=5,
        window=120,
        failure_rate=0.25,
        min_requests=8,
        cooldown=10,
        max_cooldown=300,
        half_open_probes=2,
        slow_call_ms=9000,
        cold_start_wait=0.5,
    )
    assert c.routing.strategy == "score"
    assert c.routing.weights == Weights(1, 2, 0)
    assert c.routing.hedge_after_ms == 750
    assert (c.queue.max_wait, c.queue.max_size) == (15, 7)
    assert c.state.path == "/tmp/failover-state.json"
    assert c.priorities() == [1, 2]  # unset priority = position


def test_minimal_file_gets_defaults():
    c = parse_config(MINIMAL)
    assert c.retry == RetryPolicy() and c.breaker == BreakerPolicy()
    assert (c.routing.strategy, c.routing.hedge_after_ms) == ("priority", None)
    assert (c.queue.max_wait, c.queue.max_size) == (60, 1000)
    assert base_url(c.providers[0]) == "https://api.openai.com"
    assert key_env(c.providers[0]) == "OPENAI_API_KEY"


def test_null_for_optional_values_is_accepted():
    c = parse_config(MINIMAL + "breaker: {slow_call_ms: null}\nrouting: {hedge_after_ms: null}\n")
    assert c.breaker.slow_call_ms is None and c.routing.hedge_after_ms is None


# --- validation messages -----------------------------------------------------------------------


def test_wrong_types_name_file_line_and_key_path():
    text = """\
providers:
  - name: a
    kind: openai
    model: m
  - name: b
    kind: ollama
    model: m2
    timeout: fast
    priority: 1.5
    cost: {input_per_mtok: 1, output_per_mtok: x}
retry:
  max_delay: "5"
queue: 5
"""
    assert problems(text) == [
        'providers.yaml:8: providers[1].timeout: expected a number, got "fast"',
        "providers.yaml:9: providers[1].priority: expected a whole number, got 1.5",
        'providers.yaml:10: providers[1].cost.output_per_mtok: expected a number, got "x"',
        'providers.yaml:12: retry.max_delay: expected a number, got "5"',
        "providers.yaml:13: queue: expected a mapping, got 5",
    ]


def test_first_problem_is_the_exception_text():
    with pytest.raises(ConfigError) as info:
        parse_config("providers:\n  - {name: a, kind: openai, model: m, timeout: fast}\n", "p.yml")
    exc = info.value
    assert str(exc) == 'p.yml:2: providers[0].timeout: expected a number, got "fast"'
    assert (exc.file, exc.line, exc.path) == ("p.yml", 2, "providers[0].timeout")


def test_structure_type_errors():
    assert problems("providers: {a: 1}\n") == [
        "providers.yaml:1: providers: expected a list, got a mapping"
    ]
    assert problems("- a\n- b\n") == ["providers.yaml:1: expected a mapping, got a list"]
    assert problems("providers:\n  - {name: a, kind: openai, model: m, timeout: null}\n") == [
        "providers.yaml:2: providers[0].timeout: expected a number, got nothing"
    ]


def test_boolean_is_not_described_as_a_string():
    assert problems("providers:\n  - {name: a, kind: openai, model: m, timeout: true}\n") == [
        "providers.yaml:2: providers[0].timeout: expected a number, got true"
    ]


def test_unknown_keys_suggest_the_closest_name():
    text = """\
providers:
  - name: a
    kind: antropic
    model: m
    timout: 5
retyr: {}
routing: {weights: {latncy: 1}, zzzzzz: 1}
"""
    assert problems(text) == [
        "providers.yaml:3: providers[0].kind: expected one of anthropic, openai, ollama, gemini, "
        "got \"antropic\" (did you mean 'anthropic'?)",
        "providers.yaml:5: providers[0].timout: unknown key (did you mean 'timeout'?)",
        "providers.yaml:6: retyr: unknown key (did you mean 'retry'?)",
        "providers.yaml:7: routing.weights.latncy: unknown key (did you mean 'latency'?)",
        "providers.yaml:7: routing.zzzzzz: unknown key",
    ]


def test_duplicate_provider_names_and_keys():
    text = """\
providers:
  - {name: a, kind: openai, model: m}
  - {name: b, kind: openai, model: m}
  - {name: a, kind: ollama, model: m}
retry: {}
retry: {}
"""
    assert problems(text) == [
        'providers.yaml:4: providers[2].name: duplicate provider name "a" (also providers[0])',
        "providers.yaml:6: retry: duplicate key",
    ]


def test_bounds():
    text = """\
providers:
  - {name: a, kind: openai, model: m, timeout: 0, cost: {input_per_mtok: -1}}
retry: {attempts: 0}
breaker: {failure_rate: 1.5, half_open_probes: 0, cold_start_wait: -0.1}
queue: {max_wait: -1}
"""
    assert problems(text) == [
        "providers.yaml:2: providers[0].timeout: must be > 0, got 0",
        "providers.yaml:2: providers[0].cost.input_per_mtok: must be >= 0, got -1",
        "providers.yaml:3: retry.attempts: must be >= 1, got 0",
        "providers.yaml:4: breaker.failure_rate: must be > 0 and <= 1, got 1.5",
        "providers.yaml:4: breaker.half_open_probes: must be >= 1, got 0",
        "providers.yaml:4: breaker.cold_start_wait: must be >= 0, got -0.1",
        "providers.yaml:5: queue.max_wait: must be >= 0, got -1",
    ]


def test_max_cooldown_below_cooldown():
    text = MINIMAL + "breaker:\n  cooldown: 100\n  max_cooldown: 50\n"
    assert problems(text) == ["providers.yaml:5: breaker.max_cooldown: must be >= breaker.cooldown"]


def test_cooldown_above_default_max_cooldown_points_at_cooldown():
    text = MINIMAL + "breaker:\n  cooldown: 700\n"
    (problem,) = problems(text)
    assert problem.endswith("breaker.max_cooldown: must be >= breaker.cooldown")
    assert problem.split(":")[1] in ("3", "4")  # the breaker mapping or its cooldown


def test_missing_required_keys():
    text = "providers:\n  - name: a\n    kind: openai\n  - model: m\n"
    assert problems(text) == [
        "providers.yaml:2: providers[0].model: required key is missing",
        "providers.yaml:4: providers[1].name: required key is missing",
        "providers.yaml:4: providers[1].kind: required key is missing",
    ]
    assert problems("retry: {attempts: 2}\n") == [
        "providers.yaml:1: providers: required key is missing"
    ]
    assert problems("providers: []\n") == [
        "providers.yaml:1: providers: at least one provider is required"
    ]


def test_invalid_yaml_names_a_line():
    (p,) = problems("providers:\n  - name: a\n\tkind: x\n")
    assert p.startswith("providers.yaml:3: invalid YAML: ")
    assert "'\\t'" in p
    (p,) = problems("providers:\n  - name: a\n    kind: [openai\n")
    assert p.startswith("providers.yaml:4: invalid YAML: ")


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n"])
def test_empty_file(text):
    assert problems(text) == ["providers.yaml: the file is empty: it needs a 'providers' list"]


def test_every_problem_is_collected_in_line_order():
    text = """\
queue: {max_size: -3}
providers:
  - {name: a, kind: nope, model: m}
  - {name: a, kind: openai, model: m, timeout: slow}
retry: {attempts: 0}
"""
    assert [p.split(": ")[0] for p in problems(text)] == [
        "providers.yaml:1",
        "providers.yaml:3",
        "providers.yaml:4",
        "providers.yaml:4",
        "providers.yaml:5",
    ]
    assert len(problems(text)) == 5


# --- discovery ---------------------------------------------------------------------------------


@pytest.fixture
def places(tmp_path, monkeypatch):
    """An empty working directory and user config dir; returns a writer for each place."""
    cwd = tmp_path / "cwd"
    user = tmp_path / "user"
    cwd.mkdir()
    user.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(config_module, "config_dir", lambda: user)
    monkeypatch.delenv("FAILOVER_CONFIG", raising=False)

    def write(where: str, name: str) -> Path:
        folder = {"cwd": cwd, "user": user, "tmp": tmp_path}[where]
        path = folder / ("providers.yaml" if where != "tmp" else f"{name}.yaml")
        path.write_text(f"providers:\n  - {{name: {name}, kind: ollama, model: m}}\n")
        return path

    return write


def _first(config: Config) -> str:
    return config.providers[0].name


def test_discovery_order(places, monkeypatch):
    assert load_config().providers == DEFAULT_PROVIDERS
    assert load_config().source is None
    places("user", "from_user_dir")
    assert _first(load_config()) == "from_user_dir"
    places("cwd", "from_cwd")
    assert _first(load_config()) == "from_cwd"
    env_file = places("tmp", "from_env")
    monkeypatch.setenv("FAILOVER_CONFIG", str(env_file))
    assert _first(load_config()) == "from_env"
    assert load_config().source == str(env_file)
    explicit = places("tmp", "explicit")
    assert _first(load_config(explicit)) == "explicit"
    assert find_config(explicit) == explicit


def test_env_mapping_can_be_passed_explicitly(places):
    env_file = places("tmp", "from_env")
    assert _first(load_config(env={"FAILOVER_CONFIG": str(env_file)})) == "from_env"
    assert find_config(env={}) is None


def test_missing_explicit_or_env_file_is_an_error_not_a_fallback(places, tmp_path):
    places("cwd", "from_cwd")
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(missing)
    assert str(info.value) == f"{missing}: no such file"
    with pytest.raises(ConfigError, match="no such file"):
        load_config(env={"FAILOVER_CONFIG": str(missing)})


def test_unreadable_file_is_a_config_error(places, tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path)  # a directory
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"\xff\xfe\x00providers")
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(binary)


def test_file_problems_carry_the_path(places, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("providers:\n  - {name: a, kind: openai, model: m, timeout: fast}\n")
    with pytest.raises(ConfigError) as info:
        load_config(bad)
    assert str(info.value) == f'{bad}:2: providers[0].timeout: expected a number, got "fast"'


def test_built_in_default_chain():
    assert EXPORTED_DEFAULTS is DEFAULT_PROVIDERS
    assert [(p.kind, key_env(p)) for p in DEFAULT_PROVIDERS] == [
        ("anthropic", "ANTHROPIC_API_KEY"),
        ("openai", "OPENAI_API_KEY"),
        ("ollama", None),
    ]
    assert base_url(DEFAULT_PROVIDERS[2]) == "http://localhost:11434"


# --- plain lists -------------------------------------------------------------------------------


def test_as_config_accepts_a_list_and_rejects_bad_ones():
    one = ProviderConfig(name="a", kind="openai", model="m")
    assert as_config([one]) == Config(providers=(one,))
    with pytest.raises(ConfigError, match="duplicate provider name"):
        as_config([one, one])
    with pytest.raises(ConfigError, match="at least one provider"):
        as_config([])
    with pytest.raises(ConfigError, match="expected a Config or a list of ProviderConfig"):
        as_config([{"name": "a"}])  # type: ignore[list-item]


async def test_router_accepts_default_providers():
    clock = VirtualClock()
    fakes = [ScriptedProvider(p.name, clock) for p in DEFAULT_PROVIDERS]
    router = FailoverRouter(DEFAULT_PROVIDERS, providers=fakes, clock=clock)
    assert router.order() == ["claude", "gpt", "llama"]
    result = await clock.run(router.route("hi"))
    assert result.provider == "claude"
    assert result.cost == pytest.approx((10 * 3.0 + 1 * 15.0) / 1e6)  # priced from the config


async def test_router_accepts_a_plain_list_of_provider_configs():
    clock = VirtualClock()
    fake = ScriptedProvider("mine", clock)
    router = FailoverRouter(
        [ProviderConfig(name="mine", kind="ollama", model="m")], providers=[fake], clock=clock
    )
    assert router.config.retry == RetryPolicy()
    assert (await clock.run(router.route("hi"))).provider == "mine"


HAS_ADAPTERS = (Path(config_module.__file__).parent / "providers" / "__init__.py").exists()


@pytest.mark.skipif(not HAS_ADAPTERS, reason="failover_cli.providers not written yet")
async def test_router_builds_real_adapters_from_a_plain_list():
    from failover_cli.protocols import Provider

    configs = [
        ProviderConfig(
            name="keyless",
            kind="anthropic",
            model="m",
            base_url="http://127.0.0.1:9",
            api_key_env="FAILOVER_TEST_UNSET_KEY",
        )
    ]
    router = FailoverRouter(configs, env={})
    try:
        assert isinstance(router.providers["keyless"], Provider)
        assert router.providers["keyless"].name == "keyless"
        with pytest.raises(AllProvidersFailed) as info:
            await router.route("hi")
        (attempt,) = info.value.attempts
        assert (attempt.provider, attempt.outcome) == ("keyless", "skipped")
        assert "FAILOVER_TEST_UNSET_KEY" in attempt.message
    finally:
        await router.aclose()


# --- hostile values: NaN, tags, nesting, keys in the wrong place --------------------------------


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf", ".NaN"])
def test_non_finite_numbers_are_refused(value: str) -> None:
    # NaN passes every `<`/`>` bound: `cooldown: .nan` once kept a breaker open forever.
    found = problems(MINIMAL + f"breaker: {{cooldown: {value}}}\n")
    assert found == [f"providers.yaml:3: breaker.cooldown: expected a finite number, got {value}"]


def test_unusual_yaml_tags_are_a_config_error_not_a_crash() -> None:
    text = MINIMAL + "retry: {attempts: !!python/object:os.system echo}\nqueue: {max_wait: !x 3}\n"
    found = problems(text)
    assert len(found) == 2
    assert "retry.attempts: cannot read a value tagged" in found[0]
    assert "queue.max_wait: cannot read a value tagged !x" in found[1]


def test_deep_nesting_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="nested too deeply"):
        parse_config("providers: " + "[" * 50_000 + "]" * 50_000, "providers.yaml")


def test_a_key_pasted_into_api_key_env_is_refused_and_never_echoed() -> None:
    key = "sk-ant-api03-abcdefghijklmnopqrstuvwxyz0123456789"
    found = problems(
        f"providers:\n  - {{name: c, kind: anthropic, model: m, api_key_env: {key}}}\n"
    )
    assert len(found) == 1 and "providers[0].api_key_env" in found[0]
    assert "not the key itself" in found[0]
    assert key not in found[0] and "abcdefgh" not in found[0]


def test_network_keys_decode_headers_as_pairs() -> None:
    cfg = parse_config(
        "providers:\n"
        "  - name: router\n    kind: openai\n    model: m\n"
        "    base_url: https://openrouter.example\n"
        "    proxy: http://127.0.0.1:3128\n    ca_bundle: /etc/ssl/corp.pem\n"
        "    headers: {HTTP-Referer: https://me.example, api-key: '${AZURE_KEY}'}\n"
        "    first_token_timeout: 4\n    idle_timeout: 6\n    continuation: instruct\n"
        "    drop_params: [temperature]\n",
        "providers.yaml",
    )
    p = cfg.providers[0]
    assert p.headers == (("HTTP-Referer", "https://me.example"), ("api-key", "${AZURE_KEY}"))
    assert (p.proxy, p.ca_bundle, p.first_token_timeout, p.idle_timeout) == (
        "http://127.0.0.1:3128",
        "/etc/ssl/corp.pem",
        4.0,
        6.0,
    )
    assert (p.continuation, p.drop_params) == ("instruct", ("temperature",))


def test_bad_urls_and_headers_are_named() -> None:
    found = problems(
        "providers:\n  - name: a\n    kind: openai\n    model: m\n"
        "    base_url: ftp://x\n    proxy: socks\n"
        "    headers: {'bad header': v}\n"
    )
    assert found == [
        "providers.yaml:5: providers[0].base_url: expected a URL starting with http:// or https://",
        "providers.yaml:6: providers[0].proxy: expected a URL starting with http:// or https://",
        "providers.yaml:7: providers[0].headers.bad header: not a valid HTTP header name",
    ]


def test_a_huge_config_file_is_refused_without_reading_it_all(tmp_path: Path) -> None:
    big = tmp_path / "providers.yaml"
    big.write_bytes(MINIMAL.encode() + b"#" * (config_module.MAX_CONFIG_BYTES + 10))
    with pytest.raises(ConfigError, match="not a configuration"):
        load_config(big)


def test_the_built_in_chain_names_current_models() -> None:
    # claude-sonnet-4-5 reached end of life on 2026-11-30.
    models = {p.kind: p.model for p in DEFAULT_PROVIDERS}
    assert models["anthropic"] != "claude-sonnet-4-5"
    assert models["openai"] != "gpt-4o-mini"


def test_sections_for_history_budget_gateway_and_model_aliases():
    c = parse_config(
        "providers:\n"
        "  - {name: a, kind: openai, model: m}\n"
        "  - {name: b, kind: ollama, model: m}\n"
        "log: false\n"
        "budget: {daily_usd: 1.5, providers: {a: {monthly_usd: 3}}}\n"
        "serve: {port: 9000, keys_env: GW_KEYS}\n"
        "models: {fast: [b, a]}\n"
    )
    assert c.log.enabled is False
    assert c.budget.daily_usd == 1.5 and c.budget.providers["a"].monthly_usd == 3.0
    assert c.budget.enabled
    assert c.serve.port == 9000 and c.serve.keys_env == "GW_KEYS" and c.serve.host == "127.0.0.1"
    assert c.models == {"fast": ("b", "a")}
    assert not parse_config("providers: [{name: a, kind: openai, model: m}]\n").budget.enabled


@pytest.mark.parametrize(
    ("tail", "message"),
    [
        ("models: {fast: [zz]}", 'models.fast: no provider named "zz"'),
        ("models: {fast: []}", "models.fast: an empty chain"),
        ("models: [a]", "models: expected a mapping"),
        ("budget: {providers: {zz: {daily_usd: 1}}}", 'budget.providers: no provider named "zz"'),
        ("budget: {daily_usd: -1}", "budget.daily_usd: must be >= 0"),
        ("budget: {daily_usd: .nan}", "budget.daily_usd: expected a finite number"),
        ("serve: {port: 70000}", "serve.port: must be >= 0 and <= 65535"),
        ("log: maybe", "log: expected true or false"),
    ],
)
def test_new_sections_are_validated_with_paths(tail, message):
    with pytest.raises(ConfigError) as info:
        parse_config("providers: [{name: a, kind: openai, model: m}]\n" + tail + "\n", "p.yaml")
    assert message in str(info.value)
