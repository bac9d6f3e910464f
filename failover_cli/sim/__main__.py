"""``python -m failover_cli.sim``: serve one simulated provider until Ctrl-C.

Rehearse an outage against your own chain: point a provider's ``base_url`` at the printed URL
and script the failure, e.g. ``--statuses 529,529,200 --retry-after 2``, ``--fault stall`` or
``--statuses 429 --remaining-requests 0 --requests-reset 5``.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any, cast

from ..types import KINDS, Kind
from .behavior import FAULTS, Behavior
from .simulator import Simulator
from .wire import RecordedRequest


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m failover_cli.sim",
        description="Serve a local simulator of one provider API, failing on demand.",
    )
    add = parser.add_argument
    add("--kind", required=True, choices=KINDS, help="which API to speak")
    add("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    add("--port", type=int, default=0, help="port to listen on (default: any free port)")
    add("--api-key", help="the only key accepted (default: any non-empty key)")
    add("--text", help="the answer (streamed word by word)")
    add("--model", help="model name to report (default: the requested one)")
    add("--latency", type=float, default=0.0, help="seconds before the status line")
    add("--ttft", type=float, default=0.0, help="seconds before the first streamed token")
    add("--tps", type=float, help="tokens per second (default: no pacing)")
    add("--failure-rate", type=float, default=0.0, help="probability of --failure-status")
    add("--failure-status", type=int, default=500, help="status of random failures")
    add("--seed", type=int, default=0, help="seed of the random failures")
    add("--statuses", type=_statuses, default=(), help="scripted statuses, e.g. 500,500,200")
    add("--retry-after", type=_retry_after, help="Retry-After header on error responses")
    add("--retry-after-ms", type=int, help="retry-after-ms header on error responses")
    add("--fault", choices=FAULTS, help="misbehaviour applied to every answer")
    add("--fault-after-tokens", type=int, default=2, help="tokens before a stream fault")
    add("--health-status", type=int, help="status of the health endpoint (default: 200)")
    add("--remaining-requests", type=int, help="requests left, in rate-limit headers")
    add("--remaining-tokens", type=int, help="tokens left, in rate-limit headers")
    add("--requests-reset", type=float, default=1.0, help="seconds until requests refill")
    add("--tokens-reset", type=float, default=60.0, help="seconds until tokens refill")
    add("--quiet", action="store_true", help="do not log each request to stderr")
    return parser


def _statuses(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        message = f"expected comma-separated status codes, got {text!r}"
        raise argparse.ArgumentTypeError(message) from None


def _retry_after(text: str) -> float | str:
    try:
        return float(text)
    except ValueError:
        return text  # an HTTP date


def _log(request: RecordedRequest, status: int) -> None:
    outcome = str(status) if status else "no answer (hang)"
    print(f"{request.method} {request.path} -> {outcome}", file=sys.stderr, flush=True)


class SimOptionError(ValueError):
    """A value the simulator cannot run with; ``option`` names the flag."""

    def __init__(self, message: str, option: str) -> None:
        super().__init__(message)
        self.option = option


def main(argv: list[str] | None = None) -> int:
    """Run the simulator command; returns the exit status."""
    parser = build_parser()
    args = vars(parser.parse_args(argv))
    args["statuses"] = ",".join(map(str, args["statuses"]))
    if args["retry_after"] is not None:
        args["retry_after"] = str(args["retry_after"])
    try:
        return run(**args)
    except SimOptionError as error:
        parser.error(f"argument {error.option}: {error}")


def run(
    *,
    kind: str | None,
    host: str = "127.0.0.1",
    port: int = 0,
    api_key: str | None = None,
    quiet: bool = False,
    text: str | None = None,
    statuses: str | None = None,
    retry_after: str | None = None,
    fault: str | None = None,
    tps: float | None = None,
    **behavior: Any,
) -> int:
    """Serve one simulator until Ctrl-C or SIGTERM (the options of ``failover sim``); returns
    the exit status. Raises SimOptionError for a value it cannot run with."""
    if kind not in KINDS:
        raise SimOptionError(f"expected one of {', '.join(KINDS)}, got {kind!r}", "--kind")
    if fault is not None and fault not in FAULTS:
        raise SimOptionError(f"expected one of {', '.join(FAULTS)}, got {fault!r}", "--fault")
    try:
        scripted = _statuses(statuses or "")
    except argparse.ArgumentTypeError as error:
        raise SimOptionError(str(error), "--statuses") from None
    options = {
        **behavior,
        "tokens_per_second": tps,
        "statuses": scripted,
        "retry_after": None if retry_after is None else _retry_after(retry_after),
        "fault": fault,
    }
    if text is not None:
        options["text"] = text
    try:
        behaviour = Behavior(**options)
    except ValueError as error:
        raise SimOptionError(str(error), _option_of(str(error))) from None
    listener = None if quiet else _log
    api = cast(Kind, kind)  # checked against KINDS above
    sim = Simulator(api, behaviour, api_key=api_key, host=host, port=port, listener=listener)
    stop = threading.Event()
    with _handling(signal.SIGTERM, lambda *_: stop.set()):
        try:  # from here on, Ctrl-C means "stop", whenever it comes
            try:
                sim.start()
            except OSError as error:
                reason = error.strerror or str(error)
                print(f"error: cannot listen on {host}:{port}: {reason}", file=sys.stderr)
                return 1
            print(sim.base_url, flush=True)
            print(f"{kind} simulator listening; Ctrl-C to stop", file=sys.stderr, flush=True)
            stop.wait()
        except KeyboardInterrupt:
            pass
        finally:
            with _handling(signal.SIGINT, signal.SIG_IGN):  # a second Ctrl-C while stopping
                sim.stop()
    return 0


def _option_of(message: str) -> str:
    """The option a Behavior error is about: its first problem starts with the field's name
    (``invalid Behavior: latency must be ...``)."""
    field = message.removeprefix("invalid Behavior: ").split(" ", 1)[0]
    field = {"tokens_per_second": "tps", "status": "statuses"}.get(field, field)
    option = "--" + field.replace("_", "-")
    known = {flag for action in build_parser()._actions for flag in action.option_strings}
    return option if option in known else "options"


@contextlib.contextmanager
def _handling(signum: int, handler: Any) -> Iterator[None]:
    """Install a signal handler for the block (only the main thread may)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signum, handler)
    try:
        yield
    finally:
        signal.signal(signum, previous)


if __name__ == "__main__":
    sys.exit(main())
