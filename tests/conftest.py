"""Shared fixtures: loopback simulators and the real ``failover`` executable in a sandbox."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from failover_cli.clock import VirtualClock
from failover_cli.sim import Behavior, Simulator

_EXE = shutil.which("failover", path=os.path.dirname(sys.executable))
FAILOVER = [_EXE] if _EXE else [sys.executable, "-m", "failover_cli"]
SIM_KEY_ENV = "FAILOVER_TEST_KEY"
SIM_KEY = "sim-test-key-0001"
# Fast retries and no waiting unless a test asks for it: every subprocess stays quick.
TEST_SECTIONS: dict[str, Any] = {
    "retry": {"attempts": 2, "base_delay": 0.01, "max_delay": 0.02},
    "queue": {"max_wait": 0},
}


@pytest.fixture
def sim() -> Iterator[Any]:
    """``sim(kind, behavior=None, api_key=SIM_KEY)`` starts a simulator; stopped at teardown."""
    started: list[Simulator] = []

    def start(kind: str, behavior: Behavior | None = None, api_key: str = SIM_KEY) -> Simulator:
        key = None if kind == "ollama" else api_key  # Ollama takes no key
        s = Simulator(kind, behavior or Behavior(), api_key=key)  # type: ignore[arg-type]
        started.append(s.start())
        return s

    yield start
    for s in started:
        s.stop()


@dataclass
class Sandbox:
    """A home for one test's ``failover`` runs: its own config, state and environment."""

    root: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def state_path(self) -> Path:
        return self.root / "state" / "state.json"

    def config(
        self, *providers: dict[str, Any], name: str = "providers.yaml", **sections: Any
    ) -> Path:
        """Write a configuration; ``sections`` override TEST_SECTIONS (e.g. ``breaker={...}``)."""
        doc = {"providers": list(providers), **TEST_SECTIONS, **sections}
        path = self.root / name
        path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
        self.env["FAILOVER_CONFIG"] = str(path)
        return path

    def run(
        self, *args: str, input: bytes | None = None, env: dict[str, str] | None = None,
        timeout: float = 30,
    ) -> subprocess.CompletedProcess[str]:  # fmt: skip
        """Run ``failover *args``; stdin is /dev/null unless ``input`` is given."""
        proc = subprocess.run(
            [*FAILOVER, *args],
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            capture_output=True,
            env={**self.env, **(env or {})},
            cwd=self.root,
            timeout=timeout,
        )
        return subprocess.CompletedProcess(
            proc.args,
            proc.returncode,
            proc.stdout.decode("utf-8", "replace"),
            proc.stderr.decode("utf-8", "replace"),
        )


def provider(
    name: str, s: Simulator | str, kind: str | None = None, **extra: Any
) -> dict[str, Any]:
    """A provider entry pointing at simulator ``s`` (or at a URL, then ``kind`` is required)."""
    kind = kind or s.kind  # type: ignore[union-attr]
    entry: dict[str, Any] = {
        "name": name,
        "kind": kind,
        "model": f"{name}-model",
        "base_url": s if isinstance(s, str) else s.base_url,
        "timeout": 5,
    }
    if kind != "ollama":
        entry["api_key_env"] = SIM_KEY_ENV
    entry.update(extra)
    return entry


@pytest.fixture(scope="session")
def bytecode_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Compiled modules shared by this worker's subprocesses (each would recompile otherwise
    when PYTHONDONTWRITEBYTECODE is set)."""
    return tmp_path_factory.mktemp("pycache")


@pytest.fixture
def sandbox(tmp_path: Path, bytecode_cache: Path) -> Sandbox:
    """A clean environment: no real keys, config and state inside ``tmp_path``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.endswith(("_API_KEY", "_TOKEN")) and not k.startswith(("FAILOVER_", "XDG_"))
    }
    for name in ("NO_COLOR", "FORCE_COLOR", "PYTHONDONTWRITEBYTECODE"):
        env.pop(name, None)
    env.update(
        {
            "PYTHONPYCACHEPREFIX": str(bytecode_cache),
            SIM_KEY_ENV: SIM_KEY,
            "FAILOVER_STATE": str(tmp_path / "state" / "state.json"),
            "XDG_CONFIG_HOME": str(tmp_path / "xdg-config"),
            "XDG_STATE_HOME": str(tmp_path / "xdg-state"),
            "XDG_CACHE_HOME": str(tmp_path / "xdg-cache"),
            "XDG_DATA_HOME": str(tmp_path / "xdg-data"),
            "COLUMNS": "200",
        }
    )
    return Sandbox(tmp_path, env)


@pytest.fixture
def clock() -> VirtualClock:
    """A virtual clock at 1_800_000_000.0, the T0 of the router, health and queue tests."""
    return VirtualClock(1_800_000_000.0)
