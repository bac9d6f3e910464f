"""The Redis store against a private redis-server: contention, key layout, failures."""

from __future__ import annotations

import json
import sys
import time
import uuid
from collections.abc import Iterator

import pytest

from failover_cli.errors import StateError
from failover_cli.state import SCHEMA_VERSION, ProviderDelta, Sample, StateDelta
from failover_cli.store import open_store

try:
    from redis_server import RedisServer, find_binary, free_port, redis_url
    from test_store_json import assert_all_counted, run_workers
except ImportError:  # tests/ imported as a package
    from tests.redis_server import RedisServer, find_binary, free_port, redis_url
    from tests.test_store_json import assert_all_counted, run_workers

__all__ = ["redis_url"]  # a fixture

T0 = 1_800_000_000.0


def one_provider(name: str = "p", **fields) -> StateDelta:
    return StateDelta(providers={name: ProviderDelta(**fields)})


@pytest.fixture
def prefix() -> str:
    return f"test-{uuid.uuid4().hex}"


@pytest.fixture
def raw(redis_url: str) -> Iterator:
    import redis

    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def store(redis_url: str, prefix: str) -> Iterator:
    from failover_cli.store.redis import RedisStore

    s = RedisStore(redis_url, prefix=prefix)
    yield s
    s.close()


def test_fifty_processes_lose_no_update(redis_url: str, prefix: str) -> None:
    codes = run_workers(
        kind="redis", mode="record", targets=[redis_url] * 50, updates=20, prefix=prefix
    )
    assert codes == [0] * 50
    from failover_cli.store.redis import RedisStore

    assert_all_counted(RedisStore(redis_url, prefix=prefix).load("chain"), 50, 20)


def test_keys_are_namespaced_per_chain_and_provider(store, raw, prefix: str) -> None:
    store.update("my:chain", one_provider("anthropic", requests=2))
    store.update("my:chain", one_provider("providers", requests=3))  # a name like the set's
    keys = sorted(k.decode() for k in raw.keys(f"{prefix}:*"))
    assert keys == [
        f"{prefix}:my%3Achain:%70roviders",
        f"{prefix}:my%3Achain:anthropic",
        f"{prefix}:my%3Achain:providers",
    ]
    assert raw.smembers(f"{prefix}:my%3Achain:providers") == {b"anthropic", b"providers"}
    stored = json.loads(raw.get(f"{prefix}:my%3Achain:anthropic"))
    assert stored["requests"] == 2 and stored["schema"] == SCHEMA_VERSION
    assert store.load("my:chain").providers["providers"].requests == 3


def test_stored_value_is_the_provider_state_document(store, raw, prefix: str) -> None:
    """Values are re-encoded reusing their previous text; they stay exactly to_dict()."""
    for i in range(30):
        delta = one_provider(
            requests=1,
            outcomes=[(T0 + i, i % 3 != 0)],
            samples=[Sample(T0 + i, 100.0 + i / 8, None if i % 2 else 9.5, i, i % 3 != 0)],
        )
        delta.history = 10
        state = store.update("c", delta).providers["p"]
    expected = {**state.to_dict(), "schema": SCHEMA_VERSION}
    assert raw.get(f"{prefix}:c:p") == json.dumps(expected, separators=(",", ":")).encode()
    assert len(state.samples) == 10 and state.samples[-1].t == T0 + 29


@pytest.mark.parametrize(
    "value",
    [b"\x00not json", b"[1, 2]", b'{"last_error": "boom"}', b'{"requests": 1e400}'],
    ids=["garbage", "list", "text last_error", "infinite counter"],
)
def test_unreadable_value_is_kept_aside_and_replaced(store, raw, prefix: str, value) -> None:
    key = f"{prefix}:c:p"
    raw.set(key, value)
    raw.sadd(f"{prefix}:c:providers", "p")
    warnings: list[str] = []
    store.on_warning = warnings.append
    assert store.load("c").providers == {}
    state = store.update("c", one_provider(requests=1))
    assert state.providers["p"].requests == 1
    (aside,) = raw.keys(f"{key}:corrupt-*")
    assert raw.get(aside) == value
    assert len(warnings) == 2  # one when read, one when replaced
    assert "ignoring it" in warnings[0] and aside.decode() in warnings[1]


def test_value_from_a_newer_failover_is_not_overwritten(store, raw, prefix: str) -> None:
    key = f"{prefix}:c:p"
    future = json.dumps({"schema": SCHEMA_VERSION + 1, "requests": 7}).encode()
    raw.set(key, future)
    raw.sadd(f"{prefix}:c:providers", "p")
    warnings: list[str] = []
    store.on_warning = warnings.append
    assert store.load("c").providers == {}
    assert "newer failover" in warnings[0]
    with pytest.raises(StateError, match="newer failover"):
        store.update("c", one_provider(requests=1))
    assert raw.get(key) == future


def test_open_store_picks_redis_for_redis_urls(redis_url: str) -> None:
    from failover_cli.store.redis import RedisStore

    s = open_store(redis_url)
    assert isinstance(s, RedisStore)
    s.close()


@pytest.mark.parametrize("scheme", ["redis", "rediss"])
def test_unreachable_server_raises_state_error_quickly(scheme: str) -> None:
    url = f"{scheme}://:sekrit-password@127.0.0.1:{free_port()}/0"  # nobody listens there
    started = time.monotonic()
    with pytest.raises(StateError, match="cannot connect to redis") as caught:
        open_store(url)
    assert time.monotonic() - started < 2.0
    assert "sekrit" not in str(caught.value)
    assert "127.0.0.1" in str(caught.value)


def test_server_going_away_raises_state_error(redis_url: str) -> None:
    from failover_cli.store.redis import RedisStore

    binary = find_binary()
    assert binary is not None  # redis_url would have skipped otherwise
    server = RedisServer(binary)
    try:
        s = RedisStore(server.url)
        s.update("c", one_provider(requests=1))
    finally:
        server.stop()
    started = time.monotonic()
    with pytest.raises(StateError, match="redis state store"):
        s.update("c", one_provider(requests=1))
    with pytest.raises(StateError, match="redis state store"):
        s.load("c")
    with pytest.raises(StateError, match="redis state store"):
        s.reset("c")
    assert time.monotonic() - started < 3.0
    s.close()


def test_missing_redis_package_gives_install_advice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "redis", None)  # import redis -> ImportError
    from failover_cli.store.redis import RedisStore

    with pytest.raises(StateError, match=r"pip install 'failover\[redis\]'"):
        RedisStore("redis://127.0.0.1:1/0")


def test_timeouts_default_to_a_users_request_and_can_be_raised(redis_url: str, prefix: str) -> None:
    from failover_cli.store.redis import SOCKET_TIMEOUT, RedisStore

    kwargs = RedisStore(redis_url, prefix=prefix)._client.connection_pool.connection_kwargs
    assert kwargs["socket_timeout"] == SOCKET_TIMEOUT
    patient = RedisStore(redis_url, prefix=prefix, socket_timeout=30, busy_limit=120)
    assert patient._client.connection_pool.connection_kwargs["socket_timeout"] == 30
    assert patient._busy_limit == 120
