"""With ``--workers N`` the gateway's gauges are summed over live workers only: a worker that
died (killed, crashed) must not leave its in-flight count in every later scrape."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytest.importorskip("prometheus_client")

WORKER = """
import os, sys
from failover_cli.serve.metrics import Metrics
m = Metrics()
m.in_flight.set(int(sys.argv[1]))
m.requests.labels("openai", "default", "200").inc()
sys.stdout.write(str(os.getpid())); sys.stdout.flush()
os._exit(0)  # as a killed worker: nothing of prometheus_client's clean-up runs
"""
SCRAPE = """
import sys
from failover_cli.serve.metrics import Metrics
sys.stdout.write(Metrics().render().decode())
"""


def run(code: str, env: dict[str, str], *args: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_a_dead_workers_gauges_are_dropped_and_its_counts_kept(tmp_path):
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    pid = int(run(WORKER, env, "3"))
    assert (tmp_path / f"gauge_livesum_{pid}.db").exists()
    text = run(SCRAPE, env)
    assert "failover_in_flight 0.0" in text  # not the dead worker's 3
    assert not (tmp_path / f"gauge_livesum_{pid}.db").exists()
    # Counters are the whole gateway's history: a dead worker's requests still count.
    assert 'failover_requests_total{api="openai",model="default",status="200"} 1.0' in text


def test_remembered_series_count_as_prometheus_clients_own_and_stay_bounded(monkeypatch):
    """The labelled children are remembered (one lookup per request instead of
    prometheus_client's locked one); counts go to the same series, and the memo is bounded."""
    from failover_cli.serve import metrics as module

    monkeypatch.setattr(module, "_CHILDREN_KEPT", 3)
    m = module.Metrics()
    for _ in range(2):
        m.observe("openai", "default", 200, 0.01, None)
    for status in range(400, 410):
        m.observe("openai", "default", status, 0.01, None)
    m.observe("openai", "default", 200, 0.01, None)
    labels = {"api": "openai", "model": "default", "status": "200"}
    assert m.registry.get_sample_value("failover_requests_total", labels) == 3
    assert m.registry.get_sample_value("failover_requests_total", {**labels, "status": "409"}) == 1
    assert len(m._children) <= 3


GATEWAY_WORKER = """
import asyncio, sys
from failover_cli.config import parse_config
from failover_cli.serve import app as module
module.GAUGE_INTERVAL = 0.01

async def main():
    gw = module.Gateway(parse_config("providers:\\n  - {name: a, kind: ollama, model: m}\\n"),
                        env={})
    await gw.startup()
    assert gw.admission.try_acquire() and gw.admission.try_acquire()
    await asyncio.sleep(0.2)  # some publishing intervals
    print("serving two", flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    gw.admission.release()
    await asyncio.sleep(0.2)
    print("serving one", flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    await gw.shutdown()

asyncio.run(main())
"""


def test_a_workers_in_flight_count_reaches_a_scrape_another_worker_answers(tmp_path):
    """Every worker publishes its admission gauges on its own (each second), so a scrape
    answered by any worker sums them all; they were set only by the worker scraped."""
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    worker = subprocess.Popen([sys.executable, "-c", GATEWAY_WORKER], env=env, text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)  # fmt: skip
    assert worker.stdin is not None and worker.stdout is not None
    try:
        assert worker.stdout.readline().strip() == "serving two"
        assert "failover_in_flight 2.0" in run(SCRAPE, env)  # scraped by another process
        worker.stdin.write("\n")
        worker.stdin.flush()
        assert worker.stdout.readline().strip() == "serving one"
        assert "failover_in_flight 1.0" in run(SCRAPE, env)
        worker.stdin.write("\n")
        worker.stdin.flush()
        assert worker.wait(30) == 0
    finally:
        worker.kill()
