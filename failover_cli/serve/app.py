"""The gateway as a plain ASGI 3 application: OpenAI and Anthropic APIs over one shared
:class:`~failover_cli.router.FailoverRouter`.

    app = Gateway(config)          # served by uvicorn or granian (see serve.server)

The router is built at lifespan startup and closed (state flushed) at shutdown. Each request
is read bounded, parsed by the wire module of its API, routed by its model name (an alias of
``models:``, a provider's name, or the default chain), answered in the client's own format
with the ``x-failover-*`` headers, counted in the metrics and written to the access log.

A stream's response starts only when its first event has arrived: until then the router
fails over freely, and if everything fails before any content the client gets a proper
error status (503 with Retry-After), never a 200 stream holding only an error.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import json
import math
import os
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from ..breaker import BreakerState
from ..clock import SYSTEM_CLOCK
from ..config import Config, key_env
from ..errors import ProviderError
from ..history import enabled as history_enabled
from ..history import history_path
from ..protocols import StateStore
from ..providers._base import long_to_write
from ..router import FailoverRouter, RouteStream
from ..state import ChainState
from ..types import Attempt, RouteResult
from . import anthropic_wire, openai_wire
from .accesslog import AccessLog
from .auth import GatewayKeys, presented_key
from .history import GatewayHistory
from .limits import Admission, BodyTooLarge, RateLimiter, read_body
from .metrics import CONTENT_TYPE, CURRENT, MULTIPROCESS_ENV, Metrics, Trace
from .wire import MAX_MODEL_NAME, GatewayRequest, WireError, attempt_of, summary

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

BODY_TIMEOUT = 30.0  # seconds to receive a whole request body
WATCH_AFTER = 0.05  # seconds into a provider call before the client's connection is watched
MAX_PROVIDERS_HEADER = 1024  # characters of x-failover-providers
QUEUE_RETRY_AFTER = 1  # seconds a client refused for a full queue is told to wait
SYNC_INTERVAL = 1.0  # seconds between reads of breaker state shared by other processes
GAUGE_INTERVAL = 1.0  # seconds between a worker's updates of its in-flight and queued gauges
# Seconds between writes of this process's outcomes to the shared store (breaker transitions
# are written at once whatever this says). The router's default suits a short-lived process;
# a gateway under load pays for each write, a whole read-merge-write of the store in a
# worker thread that holds the interpreter while every request in flight waits, so it
# writes as often as its peers read (SYNC_INTERVAL).
FLUSH_INTERVAL = 1.0
YOUNG_THRESHOLD = 10_000  # allocations between young collections in a gateway process
_JSON = (b"content-type", b"application/json")
_SSE = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]
_WIRES = {"openai": openai_wire, "anthropic": anthropic_wire}
_COUNT_TOKENS = ("/v1/messages/count_tokens", "/messages/count_tokens")
COUNT_TOKENS_API = "anthropic_count_tokens"  # the metrics' api label of those requests
COUNT_TIMEOUT = 30.0  # seconds one provider may take to count a request's tokens
_COMPLETIONS = {
    "/v1/chat/completions": "openai",
    "/chat/completions": "openai",
    "/v1/messages": "anthropic",
    "/messages": "anthropic",
}


class Chain(tuple[str, ...]):
    """Providers to try in exactly this order (an ``only=`` that keeps its order)."""

    __slots__ = ()


class GatewayRouter(FailoverRouter):
    """The router, trying a :class:`Chain` in its own order (the plain router orders any
    ``only=`` by the configured priorities)."""

    def order(self, only: Sequence[str] | None = None) -> list[str]:
        names = super().order(only)
        if isinstance(only, Chain):
            rank = {n: i for i, n in enumerate(only)}
            exhausted = self._exhausted  # still tried after the others until they refill
            names.sort(key=lambda n: (n in exhausted, rank[n]))
        return names


def adopt_shared_state(router: FailoverRouter, state: ChainState) -> None:
    """Take the breaker decisions other processes wrote to the shared store (``state``, as
    loaded from it) when newer than ours. The router adopts them only when it flushes
    outcomes of its own: a fleet member that is idle, or only skipping, must see them too."""
    router.tracker.adopt(state)


class Gateway:
    """The ASGI application. The state store is opened by ``open_store`` at startup (none:
    no persistence); ``keys`` None means no gateway key is required; ``router_options`` go to
    the router (tests pass a clock or providers; that clock also paces the rate limits).
    With a store, breaker decisions of other processes are read every ``sync_interval``
    seconds."""

    def __init__(
        self,
        config: Config,
        *,
        open_store: Callable[[], StateStore | None] | None = None,
        keys: GatewayKeys | None = None,
        access_log: AccessLog | None = None,
        env: Mapping[str, str] | None = None,
        sync_interval: float = SYNC_INTERVAL,
        router_options: Mapping[str, Any] | None = None,
        freeze_heap: bool = False,
    ) -> None:
        self.config = config
        self.serve = config.serve
        self.env = os.environ if env is None else env
        self.keys = keys
        self.log = access_log or AccessLog()
        self.metrics = Metrics()
        self.admission = Admission(self.serve.max_concurrency, self.serve.max_queue)
        opts = dict(router_options or {})
        self.rates = (
            RateLimiter(self.serve.rate_per_minute, clock=opts.get("clock", SYSTEM_CLOCK))
            if self.serve.rate_per_minute
            else None
        )
        self._open_store = open_store
        self._router_options = opts
        self.sync_interval = sync_interval
        # After startup, move every object alive to the collector's permanent generation
        # (gc.freeze): a full collection then walks only what requests made, instead of
        # every module and the router, and pauses all requests in flight for much less.
        # And collect the young generation rarely (YOUNG_THRESHOLD): a request leaves no
        # cycle to find (tests/test_serve_app.py holds each provider kind to it), so the default
        # 700 allocations only meant a pause every few dozen requests, to walk the objects
        # of the requests in flight. For a process that is the gateway; an app embedding
        # the Gateway leaves it off.
        self.freeze_heap = freeze_heap
        self.router: FailoverRouter | None = None
        self.store: StateStore | None = None
        self._sync: asyncio.Task[None] | None = None
        self._gauges: asyncio.Task[None] | None = None
        self.history: GatewayHistory | None = None  # serve.log: requests in the history
        self._names = [p.name for p in config.providers]
        self._models = {p.name: p.model for p in config.providers}
        self._by_model = {p.model: p.name for p in reversed(config.providers)}
        # A whole answer longer to write than this is read from the chain as a stream
        self._first_token_floor = min(
            (p.first_token_timeout for p in config.providers), default=math.inf
        )

    # --- lifespan ----------------------------------------------------------------------------

    async def startup(self) -> None:
        """Open the store and build the shared router."""
        if self.router is not None:
            return
        self.store = await asyncio.to_thread(self._open_store) if self._open_store else None
        opts = {"env": self.env, "flush_interval": FLUSH_INTERVAL, **self._router_options}
        self.router = GatewayRouter(self.config, store=self.store, listeners=[self.metrics], **opts)
        if self.serve.log and history_enabled(self.config.log, env=self.env):
            path = history_path(self.config.log)
            self.history = GatewayHistory(path, self.config, bodies=self.log.bodies)
        self.metrics.router = self.router
        if self.store is not None and self.sync_interval > 0:
            self._sync = asyncio.get_running_loop().create_task(self._sync_loop())
        if os.environ.get(MULTIPROCESS_ENV):  # one of several workers: a scrape sums them
            self._gauges = asyncio.get_running_loop().create_task(self._publish_gauges())
        if self.freeze_heap:  # what startup built lives as long as the process
            gc.collect()
            gc.freeze()
            young, older, oldest = gc.get_threshold()
            gc.set_threshold(max(young, YOUNG_THRESHOLD), older, oldest)

    async def shutdown(self) -> None:
        """Stop the background work, flush the state and close connections."""
        if self._gauges is not None:
            self._gauges.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._gauges
            self._gauges = None
        if self._sync is not None:
            self._sync.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sync
            self._sync = None
        if self.router is not None:
            await self.router.aclose()
            self.router = None
        if self.store is not None:
            from ..cli.wiring import close_store

            store, self.store = self.store, None
            await asyncio.to_thread(close_store, store)  # a failure is a warning, not lost
        if self.history is not None:
            history, self.history = self.history, None
            await asyncio.to_thread(history.close)
        self.log.close()

    async def _sync_loop(self) -> None:
        assert self.router is not None and self.store is not None
        router, store = self.router, self.store
        while True:
            await asyncio.sleep(self.sync_interval)
            try:
                state = await asyncio.to_thread(store.load, router.tracker.chain)
            except Exception:  # unreachable for now: the router warns on its own writes
                continue
            adopt_shared_state(router, state)

    async def _publish_gauges(self) -> None:
        """This worker's requests in flight and queued, every GAUGE_INTERVAL seconds, for a
        scrape that another worker answers (nothing on a request's path)."""
        metrics, admission = self.metrics, self.admission
        while True:
            metrics.in_flight.set(admission.active)
            metrics.queued.set(admission.waiting)
            await asyncio.sleep(GAUGE_INTERVAL)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                try:
                    await self.shutdown()
                finally:
                    await send({"type": "lifespan.shutdown.complete"})
                return

    # --- dispatch ----------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            try:
                await self._http(scope, receive, send)
            except asyncio.CancelledError:
                # The server gave up on this request (the shutdown grace ran out): it ends
                # here, already logged, without a traceback.
                return
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        method: str = scope["method"]
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if path in _COUNT_TOKENS:
            if method != "POST":
                await self._error(
                    send, "anthropic", WireError(405, f"{method} is not allowed here")
                )
                return
            await self._count_tokens(scope, receive, send, headers)
            return
        api = _COMPLETIONS.get(path)
        if api is not None:
            if method != "POST":
                await self._error(send, api, WireError(405, f"{method} is not allowed here"))
                return
            await self._completion(scope, receive, send, api, headers)
            return
        api = "anthropic" if "anthropic-version" in headers else "openai"
        if method not in ("GET", "HEAD"):
            if path.startswith("/v1/messages"):
                api = "anthropic"
            await self._error(send, api, WireError(404, f"no route for {method} {path}",
                                                   kind="not_found_error"))  # fmt: skip
            return
        head = method == "HEAD"
        if path == "/":
            await _json(send, 200, {"service": "failover", "status": "ok"}, head=head)
        elif path == "/healthz":
            await _json(send, 200, {"status": "ok"}, head=head)
        elif path == "/readyz":
            ready, states = self.readiness()
            body = {"ready": ready, "providers": states}
            await _json(send, 200 if ready else 503, body, head=head,
                        extra=[] if ready else [(b"retry-after", b"1")])  # fmt: skip
        elif path == "/metrics":
            data = self.metrics.render(self.admission)
            await _respond(send, 200, [(b"content-type", CONTENT_TYPE.encode())],
                           b"" if head else data)  # fmt: skip
        elif path in ("/v1/models", "/models"):
            if self.keys is not None and self._key_id(headers) is None:
                await self._error(send, api, _unauthorized())
                return
            await _json(send, 200, self.models_list(api), head=head)
        elif path.startswith(("/v1/models/", "/models/")):
            if self.keys is not None and self._key_id(headers) is None:
                await self._error(send, api, _unauthorized())
                return
            try:
                found = self.model_info(api, path.split("/models/", 1)[1])
            except WireError as err:
                await self._error(send, api, err)
                return
            await _json(send, 200, found, head=head)
        else:
            await self._error(send, api, WireError(404, f"no route for {method} {path}",
                                                   kind="not_found_error"))  # fmt: skip

    # --- views -------------------------------------------------------------------------------

    def readiness(self) -> tuple[bool, dict[str, str]]:
        """Whether some provider can serve now (its breaker is not open and its key is set),
        and each provider's breaker state."""
        router = self.router
        if router is None:
            return False, {}
        now = router.clock.time()
        states: dict[str, str] = {}
        ready = False
        for cfg in self.config.providers:
            state = router.tracker.breakers[cfg.name].state(now)
            states[cfg.name] = state.value
            env_name = key_env(cfg)
            has_key = env_name is None or bool(self.env.get(env_name, "").strip())
            if state is not BreakerState.OPEN and has_key:
                ready = True
        return ready, states

    def models_list(self, api: str) -> dict[str, Any]:
        """The model names a client may send: the aliases, then the provider names."""
        ids = [*self.config.models, *(n for n in self._names if n not in self.config.models)]
        data = [_model_object(api, i) for i in ids]
        if api == "anthropic":
            return {"data": data, "has_more": False, "first_id": ids[0] if ids else None,
                    "last_id": ids[-1] if ids else None}  # fmt: skip
        return {"object": "list", "data": data}

    def model_info(self, api: str, model: str) -> dict[str, Any]:
        """``GET /v1/models/{model}``: the model, if a request naming it would be served (an
        unknown name is, by the default chain, unless the configuration rejects those);
        WireError 404 otherwise."""
        if not model or len(model) > MAX_MODEL_NAME:
            raise WireError(404, "no such model", kind="not_found_error", param="model")
        self.chain_for(model, None)
        return _model_object(api, model)

    def chain_for(
        self, model: str, header: str | None, fallbacks: Sequence[str] = ()
    ) -> tuple[str, Chain | None]:
        """The chain label (for metrics) and the providers to try for a request; WireError
        for an unknown provider in ``header``/``fallbacks``, or an unknown model when the
        configuration rejects those."""
        if header is not None and header.strip():
            if len(header) > MAX_PROVIDERS_HEADER:
                raise WireError(400, "x-failover-providers is too long", param="header")
            names = [n.strip() for n in header.split(",") if n.strip()]
            for n in names:
                if n not in self._models:
                    raise WireError(
                        400,
                        f"x-failover-providers: no provider named '{n}'; configured: "
                        + ", ".join(self._names),
                        param="x-failover-providers",
                    )
            return "header", Chain(dict.fromkeys(names))
        label, chain = self._resolve(model)
        if label is None:
            if self.serve.unknown_model == "reject":
                known = ", ".join([*self.config.models, *self._names])
                raise WireError(404, f"model '{model[:100]}' is not served here; use one of: "
                                f"{known}", kind="not_found_error", param="model")  # fmt: skip
            label = "default"
        for fb in fallbacks:
            fb_label, fb_chain = self._resolve(fb)
            if fb_label is None or fb_chain is None:
                raise WireError(400, f"fallbacks: no model or provider named '{fb[:100]}'",
                                param="fallbacks")  # fmt: skip
            base = chain if chain is not None else Chain(self._current_order())
            chain = Chain(dict.fromkeys([*base, *fb_chain]))
        return label, chain

    def _resolve(self, model: str) -> tuple[str | None, Chain | None]:
        aliases = self.config.models
        if model in aliases:
            return model, Chain(aliases[model])
        name = model if model in self._models else self._by_model.get(model)
        if name is not None:  # a provider (or its model): it first, the default chain behind
            return name, Chain(dict.fromkeys([name, *self._current_order()]))
        if model in ("*", "default"):
            return "default", None
        return None, None

    def _retry_hint(self) -> float | None:
        """Seconds until the first open breaker admits a request again, if any is open."""
        if self.router is None:
            return None
        now = self.router.clock.time()
        times = [t for b in self.router.tracker.breakers.values()
                 if (t := b.next_admission(now)) is not None and t > now]  # fmt: skip
        return max(1.0, min(times) - now) if times else None

    def _current_order(self) -> list[str]:
        return self.router.order() if self.router is not None else list(self._names)

    def _key_id(self, headers: Mapping[str, str]) -> str | None:
        assert self.keys is not None
        return self.keys.check(presented_key(headers.get("authorization"),
                                             headers.get("x-api-key")))  # fmt: skip

    # --- completions -------------------------------------------------------------------------

    async def _completion(
        self, scope: Scope, receive: Receive, send: Send, api: str, headers: dict[str, str]
    ) -> None:
        t0 = time.monotonic()
        rid = request_id()
        wire = _WIRES[api]
        info: dict[str, Any] = {"request_id": rid, "method": "POST", "path": scope["path"],
                                "api": api}  # fmt: skip
        body: bytes | None = None
        req: GatewayRequest | None = None
        status = 500
        label = "-"
        reply: tuple[int, list[tuple[bytes, bytes]], bytes] | None = None
        try:
            body = await self._admit_client(scope, receive, headers, info)
            req = wire.parse_request(body, max_messages=self.serve.max_messages)
            label, chain = self.chain_for(
                req.model, headers.get("x-failover-providers"), req.fallbacks
            )
            info.update(model=req.model[:200], chain=list(chain) if chain else None,
                        stream=req.stream)  # fmt: skip
            if self.router is None:
                raise WireError(503, "the gateway is not serving (starting or stopping)",
                                kind="overloaded_error", retry_after=1)  # fmt: skip
            async with self._slot(receive):
                if req.stream:
                    status = await self._stream(send, receive, wire, req, chain, rid, info)
                else:
                    reply = await self._complete(receive, wire, req, chain, rid, info)
                    status = reply[0]
        except WireError as err:
            status = err.status
            info["error"] = err.message
            reply = self._error_reply(api, err, info.pop("_headers", None), rid)
        except ConnectionError:
            status = 499  # the client went away before its request was read
        except asyncio.CancelledError:
            status = 499  # cancelled by the server (shutdown grace over)
            info["error"] = "cancelled"
            raise
        except Exception as exc:  # a bug: a one-line error for the client, the type in the log
            info["error"] = f"internal error: {type(exc).__name__}"
            if not info.get("_started"):
                status = 500
                internal = WireError(500, "internal error in the gateway", kind="api_error")
                reply = self._error_reply(api, internal, rid=rid)
        finally:
            seconds = time.monotonic() - t0
            result = info.pop("_result", None)
            info.pop("_headers", None)
            info.pop("_started", None)
            self.metrics.observe(api, label, status, seconds, result)
            failure = info.pop("_exc", None)
            self.log.write(status=status, latency_ms=seconds * 1000, result=result,
                           body=body, **info)  # fmt: skip
            if self.history is not None and req is not None and label != "-" and status != 499:
                self.history.record(
                    chain=label, result=result, error=failure or info.get("error"),
                    messages=req.route_kwargs.get("messages") or (), latency_ms=seconds * 1000,
                )  # fmt: skip
        if reply is not None:  # sent after the log line is written: a client sees both
            await _respond(send, *reply)

    @contextlib.asynccontextmanager
    async def _slot(self, receive: Receive) -> AsyncIterator[None]:
        """Hold one of the gateway's concurrency slots, queueing for it; a 429 when the queue
        is full. A client that leaves while queued gives its place up (ConnectionError)."""
        admission = self.admission
        # A free slot is taken at once; only a wait in the queue needs the disconnect watcher.
        if not admission.try_acquire() and not await _unless_gone(receive, admission.acquire()):
            raise WireError(429, "the gateway is at its concurrency limit and its queue is full",
                            kind="rate_limit_error", retry_after=QUEUE_RETRY_AFTER)  # fmt: skip
        try:
            yield
        finally:
            self.admission.release()

    async def _admit_client(
        self, scope: Scope, receive: Receive, headers: Mapping[str, str], info: dict[str, Any]
    ) -> bytes:
        """The request body, once the client's gateway key and rate allow it (WireError
        otherwise)."""
        key = None
        if self.keys is not None:
            key = self._key_id(headers)
            if key is None:
                raise _unauthorized()
            info["key"] = key
        if self.rates is not None:
            client = scope.get("client")
            wait = self.rates.take(key or (client[0] if client else "-"))
            if wait is not None:
                raise WireError(429, "rate limit of this gateway key exceeded",
                                kind="rate_limit_error", retry_after=wait)  # fmt: skip
        limit = self.serve.max_body_bytes
        declared = headers.get("content-length", "")  # refused before the body comes
        if declared.isdigit() and (len(declared) > 18 or int(declared) > limit):
            too_large = f"request body larger than {limit} bytes"
            raise WireError(413, too_large, kind="request_too_large")
        try:
            async with asyncio.timeout(BODY_TIMEOUT):  # a slow client cannot hold a body open
                return await read_body(receive, limit)
        except BodyTooLarge as exc:
            raise WireError(413, str(exc), kind="request_too_large") from None
        except TimeoutError:
            raise WireError(408, f"the request body took longer than {BODY_TIMEOUT:g} s") from None

    # --- token counting ----------------------------------------------------------------------

    async def _count_tokens(
        self, scope: Scope, receive: Receive, send: Send, headers: dict[str, str]
    ) -> None:
        """``POST /v1/messages/count_tokens``: the count of the first Anthropic provider of
        the chain that answers it. Never an estimate: with no such provider the answer is a
        404 saying so."""
        t0 = time.monotonic()
        rid = request_id()
        info: dict[str, Any] = {"request_id": rid, "method": "POST", "path": scope["path"],
                                "api": "anthropic"}  # fmt: skip
        body: bytes | None = None
        label = "-"
        try:
            body = await self._admit_client(scope, receive, headers, info)
            req = anthropic_wire.parse_request(
                body, max_messages=self.serve.max_messages, default_max_tokens=1
            )
            label, chain = self.chain_for(req.model, headers.get("x-failover-providers"),
                                          req.fallbacks)  # fmt: skip
            info.update(model=req.model[:200], chain=list(chain) if chain else None)
            if self.router is None:
                raise WireError(503, "the gateway is not serving (starting or stopping)",
                                kind="overloaded_error", retry_after=1)  # fmt: skip
            async with self._slot(receive):
                tokens, name = await self._count_with(receive, req, chain)
            info["provider"] = name
            answer = json.dumps({"input_tokens": tokens}).encode()
            ids = [*_ids(rid), (b"x-failover-provider", name.encode())]
            reply = 200, [_JSON, *ids], answer
        except WireError as err:
            info["error"] = err.message
            reply = self._error_reply("anthropic", err, rid=rid)
        except ConnectionError:
            reply = None
        except Exception as exc:  # a bug: a one-line error for the client, the type in the log
            info["error"] = f"internal error: {type(exc).__name__}"
            internal = WireError(500, "internal error in the gateway", kind="api_error")
            reply = self._error_reply("anthropic", internal)
        seconds = time.monotonic() - t0
        status = reply[0] if reply else 499
        self.metrics.observe(COUNT_TOKENS_API, label, status, seconds, None)
        self.log.write(status=status, latency_ms=seconds * 1000, result=None, body=body,
                       **info)  # fmt: skip
        if reply is not None:
            await _respond(send, *reply)

    async def _count_with(
        self, receive: Receive, req: GatewayRequest, chain: Chain | None
    ) -> tuple[int, str]:
        """(tokens, provider) from the chain's first provider able to count that answers."""
        router = self.router
        assert router is not None
        names = list(chain) if chain is not None else router.order()
        counters = [
            n for n in names if callable(getattr(router.providers[n], "count_tokens", None))
        ]
        if not counters:
            raise WireError(404, "no provider of this chain can count tokens (an Anthropic "
                            "provider is needed); failover does not estimate them",
                            kind="not_found_error")  # fmt: skip
        extra = req.route_kwargs.get("extra") or {}
        request = req.request
        if extra.get("anthropic"):
            request = replace(request, extra=dict(extra["anthropic"]))
        now = router.clock.time()
        failures: list[Attempt] = []
        for name in counters:
            if router.tracker.breakers[name].state(now) is BreakerState.OPEN:
                failures.append(Attempt(name, "skipped", reason="breaker_open"))
                continue
            provider: Any = router.providers[name]
            timeout = min(COUNT_TIMEOUT, provider.config.timeout)
            try:
                return await _unless_gone(
                    receive, provider.count_tokens(request, timeout=timeout)
                ), name
            except ProviderError as exc:
                failures.append(attempt_of(exc, name))
        raise WireError(503, summary("no provider could count tokens", failures),
                        kind="overloaded_error", retry_after=self._retry_hint())  # fmt: skip

    def _route_error(self, wire: Any, exc: BaseException, info: dict[str, Any]) -> WireError:
        """The client-facing error for a routing failure, with the attempts header."""
        if isinstance(exc, WireError):
            return exc
        info["_exc"] = exc  # for the history: why, with every attempt
        if isinstance(exc, ValueError):
            return WireError(400, str(exc)[:500])
        err: WireError = wire.error_for(exc, retry_after=self._retry_hint())
        attempts = getattr(exc, "attempts", ())
        tried = [a for a in attempts if a.outcome != "skipped"]
        info["attempts"] = len(tried)
        info["_headers"] = [(b"x-failover-attempts", str(len(tried)).encode())]
        return err

    async def _complete(
        self, receive: Receive, wire: Any, req: GatewayRequest, chain: Chain | None, rid: str,
        info: dict[str, Any],
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:  # fmt: skip
        assert self.router is not None
        trace = Trace()
        CURRENT.set(trace)
        try:
            if long_to_write(req.request.max_tokens, self._first_token_floor):
                work = _whole(self.router.stream(**_routed(req), only=chain))
            else:
                work = self.router.route(**_routed(req), only=chain)
            result = await _unless_gone(receive, work)
        except ConnectionError:
            raise
        except Exception as exc:
            raise self._route_error(wire, exc, info) from None
        info["_result"] = result
        data = wire.render_response(result, model=result.model, request_id=rid,
                                    created=int(time.time()))  # fmt: skip
        return 200, [_JSON, *_route_headers(result, rid)], data

    async def _stream(
        self, send: Send, receive: Receive, wire: Any, req: GatewayRequest, chain: Chain | None,
        rid: str, info: dict[str, Any],
    ) -> int:  # fmt: skip
        router = self.router
        assert router is not None
        trace = Trace()
        CURRENT.set(trace)
        began = time.monotonic()
        try:
            rs = router.stream(**_routed(req), only=chain)
        except Exception as exc:
            raise self._route_error(wire, exc, info) from None
        events = rs.events()
        try:
            try:
                first = await events.__anext__()
            except StopAsyncIteration:
                raise WireError(502, "the stream ended before any event",
                                kind="api_error") from None  # fmt: skip
            except Exception as exc:
                raise self._route_error(wire, exc, info) from None
            provider = rs.provider or ""
            model = self._models.get(provider, "")
            overhead = max(0.0, (trace.started_at.get(provider, began) - began) * 1000)
            headers = [
                *_SSE,
                *_ids(rid),
                (b"x-failover-provider", provider.encode()),
                (b"x-failover-model", _header_value(model)),
                (b"x-failover-attempts", str(max(1, trace.tried)).encode()),
                (b"x-failover-overhead-ms", f"{overhead:.3f}".encode()),
            ]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            info["_started"] = True
            gone = asyncio.Event()
            watcher = asyncio.get_running_loop().create_task(_watch_disconnect(receive, gone.set))
            try:
                chunks = wire.render_stream(
                    _prepend(first, events), model=model, request_id=rid,
                    created=int(time.time()), include_usage=req.include_usage,
                )  # fmt: skip
                async for chunk in chunks:
                    if gone.is_set():
                        break
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                await send({"type": "http.response.body", "body": b"", "more_body": False})
            finally:
                watcher.cancel()
        finally:
            await rs.aclose()
        info["_result"] = rs.result
        if rs.result is None:
            info["provider"] = provider
            info["attempts"] = trace.tried
            info["error"] = "the stream ended with an error event"
        return 200

    def _error_reply(
        self,
        api: str,
        err: WireError,
        extra: list[tuple[bytes, bytes]] | None = None,
        rid: str | None = None,
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """An error answer in ``api``'s format, with the request's id (a new one if none)."""
        rid = rid or request_id()
        headers = [_JSON, *_ids(rid), *(extra or [])]
        if err.retry_after is not None:
            headers.append((b"retry-after", str(max(1, math.ceil(err.retry_after))).encode()))
        return err.status, headers, _WIRES[api].render_error(err, request_id=rid)

    async def _error(self, send: Send, api: str, err: WireError) -> None:
        await _respond(send, *self._error_reply(api, err))


class _RequestIds:
    """Request ids unique across a fleet without a random draw (a system call) per request:
    a random prefix per process, then a count."""

    def __init__(self) -> None:
        self.reset()
        os.register_at_fork(after_in_child=self.reset)  # a forked worker draws its own

    def reset(self) -> None:
        self._prefix = "req_" + secrets.token_hex(6)
        self._count = itertools.count()

    def __call__(self) -> str:
        return f"{self._prefix}{next(self._count):012x}"


request_id = _RequestIds()


def _unauthorized() -> WireError:
    return WireError(401, "a valid gateway key is required (Authorization: Bearer KEY or "
                     "x-api-key: KEY)", kind="authentication_error")  # fmt: skip


def _routed(req: GatewayRequest) -> dict[str, Any]:
    """The router's keyword arguments for ``req``: its request as the parser validated it
    (not built a second time), and the provider fields it carries."""
    extra = req.route_kwargs.get("extra")
    return {"request": req.request} if extra is None else {"request": req.request, "extra": extra}


def _model_object(api: str, model: str) -> dict[str, Any]:
    if api == "anthropic":
        return {"type": "model", "id": model, "display_name": model,
                "created_at": "1970-01-01T00:00:00Z"}  # fmt: skip
    return {"id": model, "object": "model", "created": 0, "owned_by": "failover"}


def _ids(rid: str) -> list[tuple[bytes, bytes]]:
    """The request id under the name each SDK reads: ``x-request-id`` (OpenAI's) and
    ``request-id`` (Anthropic's)."""
    value = rid.encode()
    return [(b"x-request-id", value), (b"request-id", value)]


def _header_value(text: str) -> bytes:
    return text.encode("ascii", "replace")[:200]


def _route_headers(result: RouteResult, rid: str) -> list[tuple[bytes, bytes]]:
    tried = [a for a in result.attempts if a.outcome != "skipped"]
    won = tried[-1].duration_ms if tried and tried[-1].outcome == "ok" else 0.0
    overhead = max(0.0, result.latency_ms - won)
    return [
        *_ids(rid),
        (b"x-failover-provider", result.provider.encode()),
        (b"x-failover-model", _header_value(result.model)),
        (b"x-failover-attempts", str(len(tried)).encode()),
        (b"x-failover-overhead-ms", f"{overhead:.3f}".encode()),
    ]


async def _whole(stream: RouteStream) -> RouteResult:
    """A whole answer read from the chain as a stream: what a client that did not ask for a
    stream gets when its answer may be long (see ``long_to_write``), so a silent provider
    costs its first-token limit, not the time the whole answer could take. Nothing has
    reached the client, so any provider may start the answer again."""
    try:
        async for _ in stream:
            pass
    finally:
        await stream.aclose()
    assert stream.result is not None  # a stream that ran out without raising is complete
    return stream.result


async def _prepend(first: Any, rest: AsyncIterator[Any]) -> AsyncIterator[Any]:
    yield first
    async for ev in rest:
        yield ev


async def _unless_gone(receive: Receive, work: Awaitable[Any]) -> Any:
    """The result of ``work``, unless the client disconnects first: then ``work`` is
    cancelled (freeing its provider connection and permit) and ConnectionError raised.
    ``work`` runs in this task. The watcher, a task of its own, starts once ``work`` has
    taken WATCH_AFTER seconds: a call that ends sooner pays for a timer instead of a task,
    and a client that leaves is noticed at most that much later."""
    loop = asyncio.get_running_loop()
    current = asyncio.current_task()
    assert current is not None
    gone = False
    watcher: asyncio.Task[None] | None = None

    def disconnected() -> None:
        nonlocal gone
        gone = True
        current.cancel()

    def watch() -> None:
        nonlocal watcher
        watcher = loop.create_task(_watch_disconnect(receive, disconnected))

    timer = loop.call_later(WATCH_AFTER, watch)
    try:
        return await work
    except asyncio.CancelledError:
        if gone and current.uncancel() == 0:  # cancelled by the watcher, and nobody else
            raise ConnectionError("client disconnected") from None
        raise
    finally:
        timer.cancel()
        if watcher is not None:
            watcher.cancel()


async def _watch_disconnect(receive: Receive, gone: Callable[[], object]) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            gone()
            return


async def _respond(
    send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes
) -> None:
    headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _json(
    send: Send, status: int, doc: Any, *, head: bool = False,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:  # fmt: skip
    body = json.dumps(doc, separators=(",", ":")).encode()
    headers = [_JSON, *(extra or [])]
    if head:
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b""})
        return
    await _respond(send, status, headers, body)
