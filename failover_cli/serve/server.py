"""Running the gateway on a production HTTP server: uvicorn with httptools on asyncio's event
loop (measured against uvloop's loop and against granian in bench/bench_gateway.py: neither
was faster for this workload), from the optional extra ``failover[serve]``. The application is
built in each worker process from a :class:`Spec` passed in the environment
(``FAILOVER_SERVE_SPEC``), so ``--workers N`` processes each hold their own router and
share state through the configured store. On SIGTERM the server stops accepting, lets
in-flight requests and streams finish within ``grace`` seconds, then the lifespan shutdown
flushes the state.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..config import ServeConfig

SPEC_ENV = "FAILOVER_SERVE_SPEC"
INSTALL_HINT = "the gateway needs its extra: pip install 'failover[serve]'"


@dataclass(frozen=True)
class Spec:
    """What a worker needs to build the application."""

    config: str | None = None  # the configuration file (None: the usual discovery)
    state: str | None = None  # state file or redis:// URL (None: the configuration's)
    access_log: str | None = "-"  # "-" stdout, a path, or None for none
    log_bodies: bool = False
    sync_interval: float = 1.0

    def to_env(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_env(cls) -> Spec:
        raw = os.environ.get(SPEC_ENV)
        return cls(**json.loads(raw)) if raw else cls()


def missing_extra() -> str | None:
    """Why the gateway cannot run here (its server is not installed), or None."""
    try:
        import prometheus_client  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        return INSTALL_HINT
    return None


def build_app(spec: Spec) -> Any:
    """The Gateway for ``spec``: configuration, gateway keys, store and access log."""
    from ..cli.wiring import load_config, open_store, state_location
    from .accesslog import AccessLog
    from .app import Gateway
    from .auth import load_keys

    config = load_config(spec.config)
    keys = load_keys(config.serve.keys_env, config.serve.keys_file, os.environ)
    location = state_location(spec.state, config)
    log = (
        AccessLog(bodies=spec.log_bodies)  # no lines; the flag still rules the history
        if spec.access_log is None
        else AccessLog.to_path(spec.access_log, bodies=spec.log_bodies)
    )
    return Gateway(
        config,
        open_store=lambda: open_store(location),
        keys=keys,
        access_log=log,
        sync_interval=spec.sync_interval,
        freeze_heap=True,
    )


def app_factory() -> Any:
    """The application of this worker (the servers' ``--factory`` entry point)."""
    return build_app(Spec.from_env())


def listen(host: str, port: int) -> socket.socket:
    """A socket bound to ``host``:``port`` (0: a free port), for :func:`run` to serve on.
    Bound before the servers start, so the address announced is the one served, and a port
    in use is an ``OSError`` here rather than a worker's log line."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host.strip("[]"), port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)  # spawned workers accept on it
    return sock


def run(
    spec: Spec,
    *,
    listener: socket.socket,
    workers: int = 1,
    grace: float = 30.0,
    loop: str = "asyncio",
    max_connections: int | None = None,
) -> None:
    """Serve on ``listener`` (see :func:`listen`) until SIGTERM or SIGINT; returns after a
    graceful shutdown. ``loop``: uvicorn's event loop, "asyncio" or "uvloop" (if installed:
    the providers' transport runs on both).
    ``max_connections``: open connections per worker beyond which the server answers 503 at
    once (see :func:`connection_limit`)."""
    import logging

    os.environ[SPEC_ENV] = spec.to_env()
    # asyncio warns for each write to a socket its client just reset (a load generator
    # stopping mid-stream); the request is already over, so this is noise in the log.
    logging.getLogger("asyncio").setLevel(logging.ERROR)
    # The servers re-raise a signal they handled after shutting down: a no-op handler makes
    # that harmless, so a graceful stop exits 0.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    host, port = listener.getsockname()[:2]
    options = uvicorn_options(host, port, grace, loop, max_connections)
    import uvicorn

    if workers > 1:
        with _shared_metrics():
            config = uvicorn.Config(f"{__name__}:app_factory", workers=workers, **options)
            supervisor(config, listener).run()
        return
    config = uvicorn.Config(f"{__name__}:app_factory", **options)
    uvicorn.Server(config).run(sockets=[listener])


def supervisor(config: Any, listener: socket.socket) -> Any:
    """uvicorn's supervisor of ``config.workers`` processes serving on ``listener``, as
    ``uvicorn.run`` builds it: uvicorn before 0.52 also takes the function each worker runs."""
    import inspect

    import uvicorn
    from uvicorn.supervisors import Multiprocess

    options: dict[str, Any] = {"sockets": [listener]}
    if "target" in inspect.signature(Multiprocess).parameters:
        options["target"] = uvicorn.Server(config).run
    return Multiprocess(config, **options)


@contextlib.contextmanager
def _shared_metrics() -> Iterator[None]:
    """A fresh directory where every worker writes its metrics (removed afterwards), unless
    the environment already names one: a scrape of any worker then sums them all."""
    from .metrics import MULTIPROCESS_ENV

    if os.environ.get(MULTIPROCESS_ENV):
        yield
        return
    with tempfile.TemporaryDirectory(prefix="failover-metrics-") as path:
        os.environ[MULTIPROCESS_ENV] = path
        try:
            yield
        finally:
            del os.environ[MULTIPROCESS_ENV]


SPARE_CONNECTIONS = 64  # beyond the admitted and queued requests: probes, metrics, keep-alive


def connection_limit(serve: ServeConfig) -> int:
    """Open connections a worker accepts: the requests it serves and queues, plus spares.
    Without a limit, any number of clients could each hold a request body of up to
    ``max_body_bytes`` in memory before admission turns them away."""
    return serve.max_concurrency + serve.max_queue + SPARE_CONNECTIONS


def uvicorn_options(
    host: str, port: int, grace: float, loop: str, max_connections: int | None
) -> dict[str, Any]:
    """The keyword arguments of ``uvicorn.Config`` the gateway runs with: uvicorn's httptools
    protocol (its h11 one where httptools is missing), one write per answer (see
    :mod:`.coalesce`)."""
    from .coalesce import protocol

    return {
        "host": host,
        "port": port,
        "factory": True,
        "lifespan": "on",
        "access_log": False,
        "log_level": "warning",
        "server_header": False,
        "timeout_graceful_shutdown": grace,
        "loop": loop,
        "http": protocol(),
        "limit_concurrency": max_connections,
    }
