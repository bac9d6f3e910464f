"""``failover demo``: a narrated outage on loopback, through the real router, adapters and store.

Three simulators (Anthropic's API as the failing primary, OpenAI's and Ollama's healthy), a
temporary state file and a chain with short cooldowns. The scenario: the primary fails and
the request fails over; its breaker opens; later requests skip it without calling it; the
primary heals and a half-open probe closes the breaker; then the status table. No keys, no
network beyond 127.0.0.1, about ten seconds (``fast``: about one).
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.text import Text

from ..breaker import BreakerPolicy
from ..config import Config, QueueConfig, StateConfig
from ..retry import RetryPolicy
from ..router import FailoverRouter
from ..sim import Behavior, Simulator
from ..store import open_store
from ..types import Cost, Kind, ProviderConfig
from .exits import handled, run_async
from .render import RouteDisplay, make_console, status_details, status_table
from .status import status_report

DEMO_KEYS = {"DEMO_ANTHROPIC_KEY": "demo-anthropic-key", "DEMO_OPENAI_KEY": "demo-openai-key"}
FAILING = Behavior(statuses=[503], failure_rate=1.0, failure_status=529)
ANSWERS = {
    "claude": "Back in service: the half-open probe succeeded, so the breaker closed.",
    "gpt": "A circuit breaker stops calling a failing provider for a while, then lets one "
    "probe through to see whether it has recovered.",
    "llama": "Hello from the local model.",
}


@dataclass(frozen=True)
class Pace:
    """How long the demo pauses: cooldown of the breaker, pause between scenes, token rate."""

    cooldown: float
    pause: float
    tokens_per_second: float | None


NORMAL = Pace(cooldown=2.0, pause=0.6, tokens_per_second=60.0)
FAST = Pace(cooldown=0.3, pause=0.0, tokens_per_second=None)


def _provider(
    name: str, kind: Kind, model: str, urls: dict[str, str], cost: Cost
) -> ProviderConfig:
    key_env = {"anthropic": "DEMO_ANTHROPIC_KEY", "openai": "DEMO_OPENAI_KEY"}.get(kind)
    return ProviderConfig(name, kind, model, urls[name], key_env, timeout=5.0, cost=cost)


def demo_config(urls: dict[str, str], state_path: str, pace: Pace) -> Config:
    """The demo chain: claude (primary), gpt, llama, with a quick breaker."""
    return Config(
        providers=(
            _provider("claude", "anthropic", "claude-sonnet-4-5", urls, Cost(3.0, 15.0)),
            _provider("gpt", "openai", "gpt-4o-mini", urls, Cost(0.15, 0.6)),
            _provider("llama", "ollama", "llama3.2", urls, Cost()),
        ),
        retry=RetryPolicy(attempts=2, base_delay=0.05, max_delay=0.1, max_retry_after=2.0),
        breaker=BreakerPolicy(failure_threshold=2, cooldown=pace.cooldown, max_cooldown=30.0),
        queue=QueueConfig(max_wait=5.0),
        state=StateConfig(path=state_path),
        chain="demo",
        source="the demo",
    )


class _Narrator:
    def __init__(self, console: Console, pace: Pace) -> None:
        self.console = console
        self.pace = pace
        self.step = 0

    async def scene(self, title: str) -> None:
        if self.step and self.pace.pause:
            await asyncio.sleep(self.pace.pause)
        self.step += 1
        self.console.print()
        self.console.print(Text(f"{self.step}. {title}", style="bold"))

    def say(self, text: str, style: str = "") -> None:
        self.console.print(Text(f"   {text}", style=style), soft_wrap=True)


async def _ask(router: FailoverRouter, n: _Narrator, question: str) -> str:
    n.say(f'$ failover ask -v "{question}"', style="cyan")
    result = await router.stream(prompt=question, max_tokens=200).collect()
    n.say(f"answer from {result.provider}: {result.text}", style="green")
    return result.provider


async def run_demo(*, fast: bool = False, console: Console | None = None) -> int:
    """Run the scenario; return the exit status (0 when every step behaved as narrated)."""
    pace = FAST if fast else NORMAL
    out = console or make_console(stderr=False)
    n = _Narrator(out, pace)
    healthy = {
        name: Behavior(text=text, tokens_per_second=pace.tokens_per_second)
        for name, text in ANSWERS.items()
    }
    sims = {
        "claude": Simulator("anthropic", FAILING, api_key=DEMO_KEYS["DEMO_ANTHROPIC_KEY"]),
        "gpt": Simulator("openai", healthy["gpt"], api_key=DEMO_KEYS["DEMO_OPENAI_KEY"]),
        "llama": Simulator("ollama", healthy["llama"]),
    }
    with tempfile.TemporaryDirectory(prefix="failover-demo-") as tmp:
        for sim in sims.values():
            await asyncio.to_thread(sim.start)
        try:
            return await _scenario(out, n, sims, healthy, str(Path(tmp) / "state.json"), pace)
        finally:
            for sim in sims.values():
                await asyncio.to_thread(sim.stop)


async def _scenario(
    out: Console,
    n: _Narrator,
    sims: dict[str, Simulator],
    healthy: dict[str, Behavior],
    state_path: str,
    pace: Pace,
) -> int:
    cfg = demo_config({k: s.base_url for k, s in sims.items()}, state_path, pace)
    store = open_store(state_path)
    trace = RouteDisplay(out, verbose=True, animate=False)
    router = FailoverRouter(
        cfg, store=store, listeners=[trace], env=DEMO_KEYS, background_probes=False
    )
    ok = True
    try:
        out.print(Text("failover demo: three local simulators, no keys, no network", style="bold"))
        roles = ("primary, failing with 503/529", "secondary, healthy", "tertiary, healthy")
        for (name, sim), role in zip(sims.items(), roles, strict=True):
            n.say(f"{name:<7} {sim.kind:<10} {sim.base_url}  {role}")
        n.say(
            f"breaker: opens after {cfg.breaker.failure_threshold} consecutive failures, "
            f"half-open after {cfg.breaker.cooldown:g} s; state file {state_path}"
        )

        await n.scene("The primary is failing: the request retries it, then fails over.")
        ok &= await _ask(router, n, "What does a circuit breaker do?") == "gpt"

        await n.scene("claude's breaker is open: requests skip it without calling it.")
        before = sims["claude"].count
        for question in ("Why retry with jitter?", "What does half-open mean?"):
            ok &= await _ask(router, n, question) == "gpt"
        calls = sims["claude"].count - before
        n.say(f"claude's simulator received {calls} requests meanwhile", style="bold")
        ok &= calls == 0

        await n.scene("claude heals. After its cooldown, one probe goes through (half-open).")
        sims["claude"].behavior = healthy["claude"]
        until = router.tracker.breakers["claude"].snap.open_until or time.time()
        wait = max(0.0, until - time.time()) + 0.05
        n.say(f"waiting {wait:.1f} s for the cooldown…")
        await asyncio.sleep(wait)
        ok &= await _ask(router, n, "Is the primary back?") == "claude"

        await n.scene("Status, from the state file (what `failover status` shows):")
        await router.flush()
        report = status_report(cfg, store.load(cfg.chain), time.time())
        out.print(status_table(report, out.width))
        out.print(status_details(report), end="")
        out.print()
        verdict = "done" if ok else "done, but a step did not behave as narrated"
        out.print(
            Text(f"{verdict}. Next: `failover config init`, then `failover ask -v ...`.",
                 style="bold" if ok else "bold red")
        )  # fmt: skip
    finally:
        await router.aclose()
        store.close()
    return 0 if ok else 1


def run_demo_command(*, fast: bool) -> None:
    """``failover demo``: run the scenario; exit 0 when every step behaved as narrated."""
    with handled():
        raise SystemExit(run_async(run_demo(fast=fast)))
