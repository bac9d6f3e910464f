"""Peer comparison: the same scenarios through FailoverRouter and through litellm.Router.

Both routers, and a raw ``httpx.AsyncClient`` as the floor, run in the same process and the
same run, against the same OpenAI-compatible simulators (``python -m failover_cli.sim``, each in
its own process on 127.0.0.1). Figures are medians over several runs; the order of the three
paths alternates between runs.

a. overhead: sequential latency per request and throughput at concurrency 50, each against raw
   httpx posting the same request to the same server.
b. failover cost: the primary refuses connections, or answers 500; the first request on a fresh
   router and later ones (after the breaker / cooldown has tripped); ms added over the same
   tool sending the request straight to the secondary. Once with each tool's retries (3 tries
   per provider) and once with one try per provider, which isolates the routing mechanism from
   the backoff policies.
c. stampede: 50 concurrent first requests on a fresh router whose primary is dead (refused, and
   500), against the same burst through the same tool straight to the secondary and through raw
   httpx; how many attempts reached the dead primary.

Attempts on the primary are counted outside both libraries: for a refused port, the connection
attempts to it (an audit hook on ``socket.connect``); for the 500 simulator, the requests it
logs on stderr (it runs without ``--quiet``; sentinel GETs delimit each count).

Fair configuration of litellm.Router (checked against litellm 1.110; sources below):

- ``model_list``: two model groups, ``primary`` and ``secondary``, one deployment each:
  ``{"model": "openai/gpt-4o-mini", "api_base": "<simulator>/v1", "api_key": <dummy>,
  "timeout": 10}`` plus a unique ``model_info.id`` per router, so no state can carry over
  between fresh routers. The request is the same as failover's: one user message,
  ``max_tokens=64``.
- ``fallbacks=[{"primary": ["secondary"]}]``: a failed primary group falls back to the
  secondary group (failover's chain order). Fallbacks wrap retries, retries wrap one attempt
  ([1], [2]).
- ``num_retries=2``: three tries per group, like failover's ``RetryPolicy(attempts=3)``. The
  router is the only retry loop: it sets ``max_retries=0`` on the provider call [1][3].
  Backoff between tries is each tool's own: litellm's exponential backoff starts from
  ``INITIAL_RETRY_DELAY=0.5 s`` and is capped at ``MAX_RETRY_DELAY=8 s`` (litellm/constants.py),
  the same base and cap as failover's full jitter, but its waits are longer: observed 0.5-1.25 s
  before the 2nd try and 1.0-1.75 s before the 3rd, where failover draws from 0-0.5 s and 0-1 s.
  The "one try" tables (``num_retries=0`` vs ``RetryPolicy(attempts=1)``) leave backoff out.
- No equivalent exists for failover's "a refused connection fails over at once while another
  provider can answer": litellm maps a refused connection to ``InternalServerError`` (status
  500), and ``retry_policy`` is keyed by exception type, so it cannot single out refused
  connections without also stopping retries on real 500s. It is left unset.
- ``allowed_fails=2``, ``cooldown_time=30``: a deployment is cooled down on its third failure
  within the window, for 30 s, like failover's breaker (opens after 3 consecutive failures, for
  30 s). ``allowed_fails=N`` cools down on failure N+1 (checked against the simulator with one
  try per request: 1 -> 2nd, 2 -> 3rd, 3 -> 4th). Without ``allowed_fails`` a model group's
  only deployment is never cooled down [4][5], and every request pays the dead primary's
  retries (checked: 4-5 s per request, every request).
- ``timeout=10``: the same per-attempt limit as failover's provider ``timeout``.
- Routing strategy, caching, pre-call checks: defaults (simple-shuffle over one deployment, no
  cache, none).
- Offline, nothing leaves 127.0.0.1: before litellm is imported, ``LITELLM_LOCAL_MODEL_COST_MAP=
  True`` (the bundled cost map, no fetch), ``LITELLM_OFFLINE_MODE=true`` (every catalog,
  tokenizer and blog fetch uses the bundled copy or is skipped), ``LITELLM_LOCAL_ANTHROPIC_BETA_
  HEADERS``, ``LITELLM_LOCAL_BLOG_POSTS``, ``LITELLM_LOCAL_POLICY_TEMPLATES``, ``LITELLM_LOCAL_
  AUTOROUTER_PRESETS`` (each fetch's own switch, redundant with offline mode),
  ``LITELLM_LOG=ERROR`` (no retry and fallback warnings on stderr). Then
  ``litellm.suppress_debug_info = True`` (no help banner on errors),
  ``litellm.disable_aiohttp_trust_env = True`` (no proxy from the environment, as failover's
  ``trust_env=False``), ``litellm.telemetry = False`` (a no-op in 1.110: its telemetry package
  serves the proxy only and is off unless consented). No callbacks are registered, so litellm's
  logging does nothing beyond its built-in bookkeeping (cost calculation, hidden params).
  An audit hook refuses any connection or name lookup off loopback for the whole run, so a
  missed switch fails fast instead of hanging; the count of refused attempts is printed.

Known asymmetries:

- litellm speaks through the OpenAI SDK over litellm's aiohttp transport (a process-wide client
  cache; up to 1,000 connections, 500 per host, idle ones kept 15 s); failover and the raw httpx
  baseline share ``failover_cli.providers.make_client()`` (64 connections, 16 kept alive), as in
  bench_routing.py, so at concurrency 50 they reopen connections that litellm keeps.
- A fresh litellm Router's first request costs a few ms more than its later ones (router-level
  setup; no new connection), so table b compares each tool's first request with that tool's
  own first request straight to the secondary on a fresh router. The process is warmed up
  (imports, lazy attributes, connection pools) before anything is timed.
- The audit hook runs for every audited event: about 14 per litellm request, under 0.1 per
  failover request (well under 10 µs either way).

Sources: [1] docs.litellm.ai/docs/router/learn/reliability ("Retries, fallbacks and
cooldowns": a retry stays in the model group, a fallback moves to another group, a cooldown
takes a deployment out of every pick; the router is the only retry loop). [2]
docs.litellm.ai/docs/router/learn/request_lifecycle (since v1.110.0: fallbacks wrap retries,
retries wrap one attempt). [3] docs.litellm.ai/docs/router/api_reference/configuration
(``default_litellm_params``: the router adds ``max_retries: 0``). [4] BerriAI/litellm PR #8668
(single-deployment groups are cooled down only when ``allowed_fails`` / ``allowed_fails_policy``
is set). [5] BerriAI/litellm issue #40405 (one deployment per group plus ``fallbacks``: the
primary is never cooled down; ``allowed_fails=1, cooldown_time=30`` fixes it). Installed
source: litellm/constants.py (``DEFAULT_ALLOWED_FAILS=3``, ``DEFAULT_COOLDOWN_TIME_SECONDS=5``,
``INITIAL_RETRY_DELAY=0.5``, ``MAX_RETRY_DELAY=8.0``), litellm/router.py (constructor
arguments), litellm/litellm_core_utils/get_retry_from_policy.py, offline_mode.py,
get_model_cost_map.py.

    pip install -e '.[bench]'      # installs litellm
    python bench/bench_peer.py [--quick] [--only overhead|failover|stampede]

Without litellm (or if it cannot run offline) the script says so and prints failover's figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import itertools
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Protocol

import httpx
from _util import KEY, external_sim, machine, median, running_sim, table
from bench_routing import PROMPT, link, raw_once, raw_request, router_for, timed_conc, timed_seq

from failover_cli.providers import make_client
from failover_cli.retry import RetryPolicy
from failover_cli.sim import refused_url

OFFLINE_ENV = {
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "LITELLM_OFFLINE_MODE": "true",
    "LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS": "True",
    "LITELLM_LOCAL_BLOG_POSTS": "True",
    "LITELLM_LOCAL_POLICY_TEMPLATES": "True",
    "LITELLM_LOCAL_AUTOROUTER_PRESETS": "True",
    "LITELLM_LOG": "ERROR",
}
ALLOWED_FAILS = 2  # cooled down on the third failure, like failover's failure_threshold=3
COOLDOWN = 30.0  # failover's BreakerPolicy.cooldown
TIMEOUT = 10.0  # per attempt, as bench_routing's link()
BURST = 50
LATER = 3  # requests from this index on come after the breaker / cooldown has tripped
REQUESTS_PER_ROUTER = 8
LOOPBACK = {"127.0.0.1", "::1", "localhost", b"127.0.0.1", b"::1", b"localhost"}


# --- what reaches the network ---------------------------------------------------------------


class NetGuard:
    """Audit hook: refuses connections and name lookups off loopback; counts connects per port."""

    def __init__(self) -> None:
        self.blocked: list[str] = []
        self.connects: Counter[int] = Counter()

    def __call__(self, event: str, args: tuple[Any, ...]) -> None:
        if event in ("socket.connect", "socket.sendto"):
            address = args[1]
            if isinstance(address, tuple) and len(address) >= 2:
                if address[0] not in LOOPBACK:
                    self._refuse(f"{event} {address[0]}:{address[1]}")
                self.connects[address[1]] += event == "socket.connect"
        elif event in ("socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyname_ex"):
            host = args[0]
            if host is not None and host not in LOOPBACK:
                self._refuse(f"{event} {host!r}")

    def _refuse(self, what: str) -> None:
        self.blocked.append(what)
        raise PermissionError(f"bench_peer: refused to leave 127.0.0.1 ({what})")


GUARD = NetGuard()


class RequestLog:
    """The stderr log of a simulator run without ``--quiet``: counts the POSTs it answered."""

    def __init__(self, proc: subprocess.Popen[str], url: str) -> None:
        self.lines: list[str] = []
        self.url = url
        self._seen = threading.Condition()
        self._marks = itertools.count()
        self._last = 0
        threading.Thread(target=self._read, args=(proc,), daemon=True).start()

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            with self._seen:
                self.lines.append(line)
                self._seen.notify_all()

    async def posts_since_last(self, client: httpx.AsyncClient) -> int:
        """POST requests logged since the previous call: a sentinel GET delimits them (the
        simulator logs a request before answering it, so every earlier one is in the log)."""
        path = f"/bench-mark/{next(self._marks)}"
        await client.get(self.url + path)
        end = await asyncio.to_thread(self._wait_for, path)
        count = sum(1 for line in self.lines[self._last : end] if line.startswith("POST "))
        self._last = end
        return count

    def _wait_for(self, path: str) -> int:
        with self._seen:
            for _ in range(500):
                for i in range(len(self.lines) - 1, self._last - 1, -1):
                    if f" {path} " in self.lines[i]:
                        return i + 1
                self._seen.wait(0.01)
        raise RuntimeError(f"the simulator never logged {path}")


@contextlib.contextmanager
def logged_sim(kind: str, *flags: str) -> Iterator[RequestLog]:
    """Like ``external_sim`` but logging each request on stderr, which ``RequestLog`` reads."""
    with running_sim(kind, *flags, log=True) as proc:
        yield RequestLog(proc, proc.url)  # type: ignore[attr-defined]


# --- the three paths ------------------------------------------------------------------------


@dataclass
class Chain:
    """A router (or none, for raw httpx) with the one call that sends PROMPT through it."""

    ask: Callable[[], Awaitable[str]]
    close: Callable[[], Awaitable[None]]


class Path(Protocol):
    """One way to send PROMPT: raw httpx, failover or litellm."""

    name: str

    def chain(self, primary: str | None, secondary: str, tries: int = 3) -> Chain:
        """Primary (if any) falling back to secondary, ``tries`` per provider."""
        ...


class RawPath:
    name = "raw httpx"

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    def chain(self, primary: str | None, secondary: str, tries: int = 3) -> Chain:
        assert primary is None, "raw httpx only ever goes straight to the secondary"
        url, body, headers = raw_request(secondary)

        async def ask() -> str:
            return await raw_once(self.client, url, body, headers)

        async def close() -> None:
            return None

        return Chain(ask, close)


class FailoverPath:
    name = "failover"

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    def chain(self, primary: str | None, secondary: str, tries: int = 3) -> Chain:
        links = ([link("primary", primary)] if primary else []) + [link("secondary", secondary)]
        router = router_for(*links, retry=RetryPolicy(attempts=tries), client=self.client)

        async def ask() -> str:
            return (await router.route(PROMPT, max_tokens=64)).text

        return Chain(ask, router.aclose)


class LitellmPath:
    name = "litellm"

    def __init__(self, litellm: Any) -> None:
        self.litellm = litellm
        self.ids = itertools.count()

    def deployment(self, group: str, url: str) -> dict[str, Any]:
        return {
            "model_name": group,
            "litellm_params": {
                "model": "openai/gpt-4o-mini",
                "api_base": f"{url}/v1",
                "api_key": KEY,
                "timeout": TIMEOUT,
            },
            "model_info": {"id": f"bench-{group}-{next(self.ids)}"},
        }

    def chain(self, primary: str | None, secondary: str, tries: int = 3) -> Chain:
        deployments = [self.deployment("secondary", secondary)]
        if primary:
            deployments.insert(0, self.deployment("primary", primary))
        router = self.litellm.Router(
            model_list=deployments,
            fallbacks=[{"primary": ["secondary"]}] if primary else [],
            num_retries=tries - 1,
            allowed_fails=ALLOWED_FAILS,
            cooldown_time=COOLDOWN,
            timeout=TIMEOUT,
        )
        model = "primary" if primary else "secondary"
        messages = [{"role": "user", "content": PROMPT}]

        async def ask() -> str:
            response = await router.acompletion(model=model, messages=messages, max_tokens=64)
            return response.choices[0].message.content

        async def close() -> None:
            retire = getattr(router, "retire", None)
            if retire is not None:
                retire()

        return Chain(ask, close)


def load_litellm() -> tuple[Any, str]:
    """Import litellm with every network fetch switched off; raise RuntimeError if it cannot."""
    os.environ.update(OFFLINE_ENV)
    try:
        import litellm
    except Exception as exc:  # ImportError, or anything its import-time setup raises
        raise RuntimeError(f"cannot import litellm ({type(exc).__name__}: {exc})") from None
    litellm.suppress_debug_info = True
    litellm.disable_aiohttp_trust_env = True
    litellm.telemetry = False
    return litellm, metadata.version("litellm")


# --- measurements ---------------------------------------------------------------------------


@dataclass
class Verdicts:
    """For the closing lines: each compared figure, failover vs litellm."""

    lines: list[str] = field(default_factory=list)

    def add(self, label: str, failover: float, litellm: float, higher_is_better: bool) -> str:
        if litellm != litellm or failover != failover:
            return ""
        ratio = failover / litellm if higher_is_better else litellm / failover
        faster = ratio > 1
        self.lines.append(
            f"{label}: failover {'faster' if faster else 'NOT faster'} ({times(ratio)})"
        )
        return f"{times(ratio)} {'faster' if faster else 'slower'}"


def times(ratio: float) -> str:
    """A ratio as ``3.14x``, ``31.4x`` or ``3,142x``."""
    return f"{ratio:,.0f}x" if ratio >= 100 else f"{ratio:.1f}x" if ratio >= 10 else f"{ratio:.2f}x"


async def warm_up(paths: list[Path], url: str, n: int) -> None:
    for path in paths:
        chain = path.chain(None, url)
        answers = {await chain.ask() for _ in range(n)}
        await chain.close()
        assert len(answers) == 1, f"{path.name} answered differently: {answers}"


async def overhead(paths: list[Path], url: str, n: int, runs: int, verdicts: Verdicts) -> list[str]:
    chains = {p.name: p.chain(None, url) for p in paths}
    answers = {name: await c.ask() for name, c in chains.items()}
    assert len(set(answers.values())) == 1, f"different answers: {answers}"
    for _ in range(max(50, n // 5)):
        for c in chains.values():
            await c.ask()
    seq: dict[str, list[float]] = {name: [] for name in chains}
    conc: dict[str, list[float]] = {name: [] for name in chains}
    names = list(chains)
    for run in range(runs):
        order = names[run % len(names) :] + names[: run % len(names)]
        for name in order:
            gc.collect()
            seq[name].append(await timed_seq(n, chains[name].ask))
        for name in order:
            gc.collect()
            conc[name].append(await timed_conc(n, BURST, chains[name].ask))
    for c in chains.values():
        await c.close()
    raw_seq, raw_conc = median(seq["raw httpx"]), median(conc["raw httpx"])
    rows = []
    for name in names:
        added = median([(b - a) * 1e6 for a, b in zip(seq["raw httpx"], seq[name], strict=True)])
        ratio = median([b / a for a, b in zip(conc["raw httpx"], conc[name], strict=True)])
        rows.append(
            [
                name,
                median(seq[name]) * 1e6,
                "" if name == "raw httpx" else f"+{added:.0f}",
                median(conc[name]),
                f"{ratio:.2f}x",
                "",
            ]
        )
    if "litellm" in chains:
        lat = verdicts.add(
            "a. sequential latency",
            median(seq["failover"]),
            median(seq["litellm"]),
            higher_is_better=False,
        )
        thr = verdicts.add(
            "a. throughput at concurrency 50",
            median(conc["failover"]),
            median(conc["litellm"]),
            higher_is_better=True,
        )
        rows[1][-1] = f"latency {lat}; throughput {thr}"
    return [
        table(
            f"a. Routing overhead: {n} requests per run, median of {runs} runs "
            f"(raw httpx: {raw_seq * 1e6:.0f} µs, {raw_conc:.0f} req/s)",
            [
                "path",
                "sequential µs/request",
                "added µs vs raw",
                "concurrency 50 req/s",
                "throughput vs raw",
                "failover vs litellm",
            ],
            rows,
        )
    ]


class Primary:
    """A dead primary and how to count the attempts that reached it."""

    def __init__(self, label: str, url: str, log: RequestLog | None, probe: httpx.AsyncClient):
        self.label, self.url, self.log, self.probe = label, url, log, probe
        self._port = int(url.rsplit(":", 1)[1])
        self._connects = GUARD.connects[self._port]

    async def attempts(self) -> int:
        """Attempts that reached it since the previous call."""
        if self.log is not None:
            return await self.log.posts_since_last(self.probe)
        now = GUARD.connects[self._port]
        count, self._connects = now - self._connects, now
        return count


@dataclass
class FreshRuns:
    """Requests on fresh routers: the first one, the later ones, attempts on the primary."""

    first: list[float] = field(default_factory=list)  # ms
    later: list[float] = field(default_factory=list)  # ms
    hits_first: list[int] = field(default_factory=list)
    hits_later: list[int] = field(default_factory=list)

    def attempts(self) -> str:
        return f"{median(self.hits_first):.0f} / {median(self.hits_later):.0f}"


async def fresh_runs(
    path: Path, secondary: str, primary: Primary | None, tries: int, routers: int
) -> FreshRuns:
    """``routers`` fresh routers, REQUESTS_PER_ROUTER sequential requests each."""
    runs = FreshRuns()
    for _ in range(routers):
        chain = path.chain(primary.url if primary else None, secondary, tries)
        if primary:
            await primary.attempts()
        times = []
        for i in range(REQUESTS_PER_ROUTER):
            if primary and i == LATER:
                await primary.attempts()  # those of the requests in between
            times.append(await timed_seq(1, chain.ask) * 1000)
            if primary and i == 0:
                runs.hits_first.append(await primary.attempts())
        if primary:
            runs.hits_later.append(await primary.attempts())
        await chain.close()
        runs.first.append(times[0])
        runs.later.extend(times[LATER:])
    return runs


async def failover_cost(
    paths: list[Path],
    raw: RawPath,
    secondary: str,
    primaries: list[Primary],
    trials: int,
    verdicts: Verdicts,
) -> list[str]:
    """Each tool with a dead primary vs the same tool straight to the secondary, both on fresh
    routers, so a fresh router's own first-request cost is not counted as failover cost."""
    direct = {p.name: await fresh_runs(p, secondary, None, 3, trials * 2) for p in [raw, *paths]}
    out = []
    for tries, setting in [(3, "3 tries per provider"), (1, "one try per provider")]:
        for primary in primaries:
            d = direct[raw.name]
            rows: list[list[object]] = [
                [raw.name, median(d.first), "", "", median(d.later), "", "", "", ""]
            ]
            figures: dict[str, tuple[float, float]] = {}
            for path in paths:
                runs = await fresh_runs(path, secondary, primary, tries, trials)
                d = direct[path.name]
                first, later = median(runs.first), median(runs.later)
                figures[path.name] = (first, later)
                rows.append(
                    [
                        path.name,
                        median(d.first),
                        first,
                        first - median(d.first),
                        median(d.later),
                        later,
                        later - median(d.later),
                        runs.attempts(),
                        "",
                    ]
                )
            if "litellm" in figures:
                (f_first, f_later), (l_first, l_later) = figures["failover"], figures["litellm"]
                tag = f"b. primary {primary.label}, {setting}"
                rows[1][-1] = (
                    f"first {verdicts.add(tag + ', first request', f_first, l_first, False)}; "
                    f"later {verdicts.add(tag + ', later requests', f_later, l_later, False)}"
                )
            out.append(
                table(
                    f"b. Failover cost, primary {primary.label}, {setting}: ms, median of "
                    f"{trials} fresh routers x {REQUESTS_PER_ROUTER} requests (later = "
                    f"requests {LATER + 1}+; direct = the same tool straight to the secondary)",
                    [
                        "path",
                        "direct first",
                        "first request",
                        "added",
                        "direct later",
                        "later requests",
                        "added",
                        "attempts on primary: first / later",
                        "failover vs litellm",
                    ],
                    rows,
                )
            )
    return out


async def stampede(
    paths: list[Path],
    raw: RawPath,
    secondary: str,
    primaries: list[Primary],
    trials: int,
    verdicts: Verdicts,
) -> list[str]:
    async def burst(chain: Chain) -> float:
        start = time.perf_counter()
        await asyncio.wait_for(asyncio.gather(*(chain.ask() for _ in range(BURST))), 120)
        return (time.perf_counter() - start) * 1000

    async def fresh_burst(path: Path, primary: str | None) -> float:
        chain = path.chain(primary, secondary)
        try:
            return await burst(chain)
        finally:
            await chain.close()

    direct = {}
    for path in [raw, *paths]:
        direct[path.name] = median([await fresh_burst(path, None) for _ in range(trials)])
    out = []
    for primary in primaries:
        rows = [[raw.name, direct[raw.name], direct[raw.name], "1.00x", "1.00x", "", ""]]
        walls = {}
        for path in paths:
            times, hits = [], []
            for _ in range(trials):
                await primary.attempts()
                times.append(await fresh_burst(path, primary.url))
                hits.append(await primary.attempts())
            wall = walls[path.name] = median(times)
            rows.append(
                [
                    path.name,
                    wall,
                    direct[path.name],
                    f"{wall / direct[path.name]:.2f}x",
                    f"{wall / direct[raw.name]:.2f}x",
                    f"{median(hits):.0f}",
                    "",
                ]
            )
        if "litellm" in walls:
            rows[1][-1] = verdicts.add(
                f"c. stampede, primary {primary.label}", walls["failover"], walls["litellm"], False
            )
        out.append(
            table(
                f"c. Stampede, primary {primary.label}: {BURST} concurrent first requests on a "
                f"fresh router, wall ms, median of {trials}",
                [
                    "path",
                    "wall ms",
                    "same tool straight to secondary",
                    "vs own direct",
                    "vs raw httpx burst",
                    "attempts on primary",
                    "failover vs litellm",
                ],
                rows,
            )
        )
    return out


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests (a smoke run)")
    parser.add_argument("--only", choices=["overhead", "failover", "stampede"])
    args = parser.parse_args()
    n, runs, trials = (100, 3, 3) if args.quick else (1000, 5, 10)
    sys.addaudithook(GUARD)
    print(f"bench_peer on {machine()}")
    client = make_client()
    raw, failover = RawPath(client), FailoverPath(client)
    paths: list[Path] = [failover]
    with (
        external_sim("openai") as ok_url,
        logged_sim("openai", "--failure-rate", "1", "--failure-status", "500") as failing,
    ):
        try:
            litellm, version = load_litellm()
            peer = LitellmPath(litellm)
            try:
                await asyncio.wait_for(warm_up([peer], ok_url, 50), 120)
            except Exception as exc:
                first_line = str(exc).strip().split("\n", 1)[0]
                reason = f"{type(exc).__name__}: {first_line}" if first_line else type(exc).__name__
                raise RuntimeError(f"litellm.Router failed offline ({reason})") from None
            paths.append(peer)
            print(
                f"litellm {version}: Router(num_retries=2, allowed_fails={ALLOWED_FAILS}, "
                f"cooldown_time={COOLDOWN:.0f}, timeout={TIMEOUT:.0f}, fallbacks primary -> "
                f"secondary), offline (see the docstring)"
            )
        except Exception as exc:  # not installed, or it cannot run offline: failover alone
            print(
                f"litellm: NOT COMPARED, {exc if str(exc) else type(exc).__name__}; "
                "printing failover's own figures only"
            )
        await warm_up([raw, failover], ok_url, 200)
        probe = httpx.AsyncClient(trust_env=False)
        primaries = [
            Primary("refuses connections", refused_url(), None, probe),
            Primary("answers 500", failing.url, failing, probe),
        ]
        verdicts = Verdicts()
        sections: dict[str, Callable[[], Awaitable[list[str]]]] = {
            "overhead": lambda: overhead([raw, *paths], ok_url, n, runs, verdicts),
            "failover": lambda: failover_cost(paths, raw, ok_url, primaries, trials, verdicts),
            "stampede": lambda: stampede(paths, raw, ok_url, primaries, trials, verdicts),
        }
        for name, run in sections.items():
            if args.only in (None, name):
                for text in await run():
                    print(text, flush=True)
        await probe.aclose()
    await client.aclose()
    print(
        f"\nConnections or lookups off 127.0.0.1 refused: {len(GUARD.blocked)}"
        + (f" ({', '.join(sorted(set(GUARD.blocked)))})" if GUARD.blocked else "")
    )
    if len(paths) > 1:
        print("\nFailover vs litellm, row by row:")
        for line in verdicts.lines:
            print(f"- {line}")
        slower = [line for line in verdicts.lines if "NOT faster" in line]
        print(
            f"Failover faster on every row: {'yes' if not slower else 'no'} "
            f"({len(verdicts.lines) - len(slower)} of {len(verdicts.lines)})"
        )


if __name__ == "__main__":
    asyncio.run(main())
