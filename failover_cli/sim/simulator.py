"""The public face of the simulators: :class:`Simulator` and :func:`refused_url`."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from typing import Any, Self

from ..types import KINDS, Kind
from .behavior import Behavior, Script
from .engine import DIALECTS, Plan, plan
from .server import ServerThread
from .wire import RecordedRequest

RequestListener = Callable[[RecordedRequest, int], None]


class _Handler:
    """Answers requests for one simulator; runs on the server thread."""

    def __init__(
        self,
        kind: Kind,
        behavior: Behavior,
        api_key: str | None,
        history: int,
        listener: RequestListener | None,
    ) -> None:
        self.dialect = DIALECTS[kind]
        self.script = Script(behavior)  # replaced whole, never mutated, by other threads
        self.api_key = api_key
        self.requests: deque[RecordedRequest] = deque(maxlen=history)
        self.count = 0
        self.listener = listener

    def __call__(self, request: RecordedRequest) -> Plan:
        self.count += 1
        self.requests.append(request)
        answer = plan(self.dialect, self.script, request, self.api_key)
        if self.listener is not None:
            self.listener(request, answer.status)
        return answer


class Simulator:
    """A local HTTP server speaking one provider's API, scripted by a :class:`Behavior`.

    ::

        with Simulator("anthropic", Behavior(statuses=[529, 200]), api_key="sk-test") as sim:
            client.post(sim.base_url + "/v1/messages", ...)
            sim.behavior = Behavior(fault="hang")   # takes effect on the next request

    It listens on ``host`` (127.0.0.1) and ``port`` (0: any free port, kept across restarts, so
    :meth:`stop` then :meth:`start` brings the "provider" back at the same URL). The server runs
    on its own thread and event loop, so sync code, tests and other event loops can all use it.
    ``requests`` keeps the last ``history`` requests; ``count`` counts every one.
    ``listener(request, status)`` is called on the server thread after each request is planned.
    """

    def __init__(
        self,
        kind: Kind,
        behavior: Behavior | None = None,
        *,
        api_key: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        history: int = 10_000,
        listener: RequestListener | None = None,
    ) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown simulator kind {kind!r}: expected one of {', '.join(KINDS)}")
        self.kind = kind
        self.host = host
        self._port = port
        self._handler = _Handler(kind, behavior or Behavior(), api_key, history, listener)
        self._server: ServerThread | None = None
        self._lock = threading.Lock()

    # --- scripting ------------------------------------------------------------------------------

    @property
    def behavior(self) -> Behavior:
        return self._handler.script.behavior

    @behavior.setter
    def behavior(self, behavior: Behavior) -> None:
        """Replace the behaviour; scripted statuses and the random generator start afresh."""
        if not isinstance(behavior, Behavior):
            raise TypeError(f"expected a Behavior, got {type(behavior).__name__}")
        self._handler.script = Script(behavior)

    def update(self, **changes: Any) -> Behavior:
        """Change some fields of the behaviour (e.g. ``sim.update(fault=None)``).

        Unlike assigning :attr:`behavior`, the scripted statuses not consumed yet and the
        random sequence carry on, unless ``statuses``, ``seed`` or ``failure_rate`` change.
        """
        previous = self._handler.script
        script = Script(replace(previous.behavior, **changes))
        if not changes.keys() & {"statuses", "seed", "failure_rate"}:
            script.continue_from(previous)
        self._handler.script = script
        return script.behavior

    # --- observation ----------------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """The requests received (the last ``history`` of them), oldest first."""
        return list(self._handler.requests)

    @property
    def count(self) -> int:
        """How many requests were received, health checks included."""
        return self._handler.count

    @property
    def cpu_time(self) -> float | None:
        """CPU seconds the running server thread has used (for benchmarks; None if unknown)."""
        server = self._server
        return server.cpu_time() if server is not None else None

    def clear(self) -> None:
        """Forget the recorded requests (``count`` keeps counting)."""
        self._handler.requests.clear()

    # --- life cycle -----------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """``http://HOST:PORT``; the adapters append ``/v1/messages`` and the like."""
        if not self._port:
            raise RuntimeError("the simulator has no port yet: start it first")
        return f"http://{self.host}:{self._port}"

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> Self:
        """Start serving (on the same port as before, after a :meth:`stop`)."""
        with self._lock:
            if self._server is None:
                server = ServerThread(self._handler, self.host, self._port)
                self._port = server.start()
                self._server = server
        return self

    def stop(self) -> None:
        """Stop serving; every open connection (a hanging one too) is reset."""
        with self._lock:
            if self._server is not None:
                self._server.stop()
                self._server = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        return await asyncio.to_thread(self.start)

    async def __aexit__(self, *exc_info: object) -> None:
        await asyncio.to_thread(self.stop)

    def __repr__(self) -> str:
        where = f"http://{self.host}:{self._port}" if self._port else "unbound"
        state = "running" if self.running else "stopped"
        return f"<Simulator {self.kind} {where} {state}>"


def refused_url(host: str = "127.0.0.1") -> str:
    """The URL of a local port nothing listens on: connecting to it is refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port = sock.getsockname()[1]
    return f"http://{host}:{port}"
