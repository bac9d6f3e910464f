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
