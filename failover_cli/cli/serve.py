"""``failover serve``: the OpenAI- and Anthropic-compatible gateway (see
:mod:`failover_cli.serve`). Checks what must hold before binding a port: the server extra is
installed, gateway keys exist when the address is not loopback, the configuration is valid."""

from __future__ import annotations

import ipaddress
import os
import sys

from .exits import EXIT_OK, EXIT_USAGE, handled
from .output import say
from .wiring import load_config


def is_loopback(host: str) -> bool:
    """Whether ``host`` binds only this machine (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def run_serve(
    *,
    host: str | None,
    port: int | None,
    workers: int,
    grace: float,
    access_log: str | None,
    log_bodies: bool,
    config: str | None,
    state: str | None,
) -> None:
    """Serve the gateway until SIGTERM or Ctrl-C; exit 0 after a graceful stop."""
    from ..serve.server import Spec, connection_limit, listen, missing_extra, run

    problem = missing_extra()
    if problem is not None:
        say("error", problem)
        raise SystemExit(EXIT_USAGE)
    with handled():
        cfg = load_config(config)
        from ..serve.auth import load_keys

        keys = load_keys(cfg.serve.keys_env, cfg.serve.keys_file, os.environ)
        bind = host or cfg.serve.host
        if cfg.serve.passthrough_keys:
            say("error", "serve.passthrough_keys is not supported: clients' own provider keys "
                "are never forwarded; remove it")  # fmt: skip
            raise SystemExit(EXIT_USAGE)
        if keys is None and not is_loopback(bind):
            say("error", f"refusing to serve on {bind} without gateway keys: set "
                "serve.keys_env or serve.keys_file, or bind 127.0.0.1")  # fmt: skip
            raise SystemExit(EXIT_USAGE)
        spec = Spec(
            config=config or cfg.source,
            state=state,
            access_log=None if access_log == "off" else (access_log or "-"),
            log_bodies=log_bodies,
        )
        port = port if port is not None else cfg.serve.port
        shown = f"[{bind}]" if ":" in bind else bind
        try:
            listener = listen(bind, port)
        except OSError as exc:
            say("error", f"cannot listen on {shown}:{port}: {exc.strerror or exc}; "
                "choose another --port (0 picks a free one)")  # fmt: skip
            raise SystemExit(EXIT_USAGE) from None
        port = listener.getsockname()[1]
        print(f"failover: serving on http://{shown}:{port} (OpenAI base URL: "
              f"http://{shown}:{port}/v1)", file=sys.stderr, flush=True)  # fmt: skip
        run(spec, listener=listener, workers=workers, grace=grace,
            max_connections=connection_limit(cfg.serve))  # fmt: skip
    raise SystemExit(EXIT_OK)
