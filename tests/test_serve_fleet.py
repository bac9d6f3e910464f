"""Gateways sharing breaker state through a real redis-server: a provider that fails through
gateway A (``--workers 2``) is skipped by gateway B, which never sent it a request; both stop
with exit 0 on SIGTERM."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
from conftest import provider
from test_serve_app import ServeProcess, chat

from failover_cli.sim import Behavior

try:
    from redis_server import redis_url
except ImportError:  # tests/ imported as a package
    from tests.redis_server import redis_url

__all__ = ["redis_url"]  # a fixture

pytest.importorskip("uvicorn")


@contextmanager
def gateways(sandbox, *workers: str) -> Iterator[list[str]]:
    """One gateway process per item of ``workers`` (its ``--workers``) on the sandbox's
    config; on leaving, each gets SIGTERM and must exit 0 within 15 s."""
    served: list[ServeProcess] = []
    try:
        for count in workers:  # spawned workers import everything: up to 60 s to start
            args = ["--access-log", "off", "--workers", count]
            served.append(ServeProcess(args, sandbox, timeout=60))
        yield [s.url for s in served]
    finally:
        for s in served:
            s.proc.terminate()
        for s in served:
            try:
                assert s.proc.wait(15) == 0, "".join(s.stderr)
            finally:
                if s.proc.poll() is None:
                    s.proc.kill()


def test_metrics_of_several_workers_are_summed_whichever_answers_the_scrape(sandbox, sim):
    """With ``--workers 2`` each worker counts the requests it served; a scrape, answered by
    either worker, shows the whole gateway's counts."""
    up = sim("openai")
    sandbox.config(provider("a", up))
    with gateways(sandbox, "2") as (url,):
        for _ in range(20):  # a new connection each: the two workers share them out
            with httpx.Client(base_url=url, timeout=10) as c:
                assert c.post("/v1/chat/completions", json=chat()).status_code == 200
        for _ in range(10):
            with httpx.Client(base_url=url, timeout=10) as c:
                text = c.get("/metrics").text
            assert 'failover_requests_total{api="openai",model="default",status="200"} 20.0' \
                in text  # fmt: skip
            assert 'failover_attempts_total{error_class="",outcome="ok",provider="a"} 20.0' \
                in text  # fmt: skip
            assert 'failover_breaker_state{provider="a"} 0.0' in text
            assert "failover_in_flight 0.0" in text
    assert up.count == 20


def test_breaker_opened_through_one_gateway_is_skipped_by_another(sandbox, sim, redis_url):
    tag = uuid.uuid4().hex[:8]  # provider names unique to this test in the shared server
    bad, good = f"bad{tag}", f"good{tag}"
    down = sim("openai", Behavior(statuses=[500] * 50))
    up = sim("openai")
    sandbox.config(provider(bad, down), provider(good, up),
                   breaker={"failure_threshold": 1, "cooldown": 600})  # fmt: skip
    sandbox.env["FAILOVER_STATE"] = redis_url
    with gateways(sandbox, "2", "1") as urls:  # A with two workers, B
        a, b = (httpx.Client(base_url=u, timeout=10) for u in urls)
        assert b.get("/readyz").json()["providers"][bad] == "closed"
        r = a.post("/v1/chat/completions", json=chat())
        assert r.headers["x-failover-provider"] == good and r.headers["x-failover-attempts"] == "2"
        sent = down.count
        # B learns of the open breaker from Redis within its sync interval (no request needed).
        end = time.monotonic() + 10
        while b.get("/readyz").json()["providers"][bad] != "open":
            assert time.monotonic() < end, "gateway B never saw the breaker A opened"
            time.sleep(0.05)  # polling for shared state, not proving timing
        r = b.post("/v1/chat/completions", json=chat())
        assert r.status_code == 200
        assert r.headers["x-failover-provider"] == good and r.headers["x-failover-attempts"] == "1"
        assert down.count == sent  # B skipped it without trying
        a.close()
        b.close()


def test_one_half_open_probe_for_the_whole_fleet(sandbox, sim, redis_url):
    """Three gateway processes (A with two workers, B) see the primary half-open: one probe
    request reaches it; every other request meanwhile is skipped to the backup."""
    from concurrent.futures import ThreadPoolExecutor

    from failover_cli.breaker import BreakerSnapshot
    from failover_cli.state import ProviderDelta, StateDelta
    from failover_cli.store.redis import RedisStore

    tag = uuid.uuid4().hex[:8]
    primary, backup = f"primary{tag}", f"backup{tag}"
    slow = sim("openai", Behavior(latency=2.0))  # the probe stays in flight meanwhile
    up = sim("openai")
    sandbox.config(provider(primary, slow), provider(backup, up))
    sandbox.env["FAILOVER_STATE"] = redis_url
    now = time.time()
    delta = StateDelta()
    delta.providers[primary] = ProviderDelta(breaker=BreakerSnapshot(
        state="open", opened_at=now - 60, open_until=now - 1, cooldown=30.0,
        updated_at=now - 60, down_since=now - 60,
    ))  # fmt: skip
    store = RedisStore(redis_url)
    store.update("default", delta)
    store.close()
    with gateways(sandbox, "2", "1") as urls:  # A with two workers, B
        clients = [httpx.Client(base_url=u, timeout=10) for u in urls]
        with ThreadPoolExecutor(1) as pool:
            probe = pool.submit(clients[0].post, "/v1/chat/completions", json=chat())
            end = time.monotonic() + 10
            while slow.count == 0:
                assert time.monotonic() < end, "no probe reached the primary"
                time.sleep(0.01)  # polling for the request to arrive, not proving timing
            for i in range(8):  # A (either worker) and B, while the probe is out
                r = clients[i % 2].post("/v1/chat/completions", json=chat())
                assert r.status_code == 200
                assert r.headers["x-failover-provider"] == backup
            assert slow.count == 1
            answer = probe.result(timeout=10)
        assert answer.status_code == 200 and answer.headers["x-failover-provider"] == primary
        assert slow.count == 1
        for c in clients:
            c.close()
