"""The access log: one JSON object per line per request.

Each line has the time, request id, method, path, API, the client's model and the chain it
selected, the provider that answered, attempts, status, latency, time to first token, tokens,
cost, and the gateway key's id (a digest prefix, never the key). Prompts and answers are left
out unless the log was opened with ``bodies=True`` (``--log-bodies``). Error messages are
already scrubbed of upstream keys by the router.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import IO, Any

from ..fsutil import open_append
from ..types import RouteResult

MAX_BODY_LOGGED = 64 * 1024  # characters of a request body kept with --log-bodies


class AccessLog:
    """Writes access lines to ``stream`` (stdout by default), or appends to a file."""

    def __init__(self, stream: IO[str] | None = None, *, bodies: bool = False) -> None:
        self.stream = stream
        self.bodies = bodies

    @classmethod
    def to_path(cls, path: str, *, bodies: bool = False) -> AccessLog:
        """``-`` for stdout, else a file opened for appending (0600, never a symbolic link)."""
        if path == "-":
            return cls(sys.stdout, bodies=bodies)
        fd = open_append(path)
        return cls(os.fdopen(fd, "a", encoding="utf-8", buffering=1), bodies=bodies)

    def write(
        self,
        *,
        request_id: str,
        method: str,
        path: str,
        status: int,
        latency_ms: float,
        api: str | None = None,
        model: str | None = None,
        chain: list[str] | None = None,
        key: str | None = None,
        stream: bool | None = None,
        result: RouteResult | None = None,
        attempts: int | None = None,
        provider: str | None = None,
        error: str | None = None,
        body: bytes | None = None,
    ) -> None:
        """Write one line; never raises (a full disk must not fail the request)."""
        if self.stream is None:
            return
        line: dict[str, Any] = {
            "ts": round(time.time(), 3),
            "request_id": request_id,
            "method": method,
            "path": path,
            "status": status,
            "latency_ms": round(latency_ms, 3),
        }
        if api is not None:
            line.update(api=api, model=model, chain=chain, stream=stream)
        if key is not None:
            line["key"] = key
        if result is not None:
            line.update(
                provider=result.provider,
                upstream_model=result.model,
                attempts=len([a for a in result.attempts if a.outcome != "skipped"]),
                ttft_ms=None if result.ttft_ms is None else round(result.ttft_ms, 3),
                input_tokens=result.usage.input_tokens,
                output_tokens=result.usage.output_tokens,
                cost_usd=result.cost,
            )
        else:
            if provider is not None:
                line["provider"] = provider
            if attempts is not None:
                line["attempts"] = attempts
        if error is not None:
            line["error"] = error
        if self.bodies:
            if body is not None:
                line["request_body"] = body[:MAX_BODY_LOGGED].decode("utf-8", "replace")
            if result is not None:
                line["response_text"] = result.text[:MAX_BODY_LOGGED]
        try:
            self.stream.write(json.dumps(line, separators=(",", ":")) + "\n")
            self.stream.flush()
        except (OSError, ValueError):
            pass

    def close(self) -> None:
        if self.stream is not None and self.stream not in (sys.stdout, sys.stderr):
            try:
                self.stream.close()
            except OSError:
                pass
