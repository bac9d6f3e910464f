"""The access log: one JSON object per line per request.

Each line has the time, request id, method, path, API, the client's model and the chain it
selected, the provider that answered, attempts, status, latency, time to first token, tokens,
cost, and the gateway key's id (a digest prefix, never the key). Prompts and answers are left
out unless the log was opened with ``bodies=True`` (``--log-bodies``). Error messages are
already scrubbed of upstream keys by the router.

Lines are written by one background thread from a bounded queue, so the event loop never
waits for the disk or for a slow reader of stdout (a full pipe to a log collector); when the
queue is full, lines are dropped and counted, with one warning.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import sys
import threading
import time
from collections.abc import Callable
from typing import IO, Any

from ..fsutil import open_append
from ..types import RouteResult

MAX_BODY_LOGGED = 64 * 1024  # characters of a request body kept with --log-bodies
MAX_PENDING = 10_000  # lines waiting for the writer; beyond this they are dropped
MAX_BATCH = 256  # lines joined into one write
CLOSE_WAIT = 5.0  # seconds close() waits for the writer to finish the queue
_STOP = None


class AccessLog:
    """Writes access lines to ``stream`` from a writer thread, or nowhere (``stream`` None);
    :meth:`to_path` opens stdout or a file."""

    def __init__(
        self,
        stream: IO[str] | None = None,
        *,
        bodies: bool = False,
        on_warning: Callable[[str], None] | None = None,
    ) -> None:
        self.stream = stream
        self.bodies = bodies
        self.dropped = 0  # lines lost because the writer fell MAX_PENDING behind
        self.on_warning = on_warning or logging.getLogger("failover.serve").warning
        self._queue: queue.Queue[str | None] = queue.Queue(MAX_PENDING)
        self._thread: threading.Thread | None = None
        if stream is not None:
            self._thread = threading.Thread(
                target=self._run, name="failover-access-log", daemon=True
            )
            self._thread.start()

    @classmethod
    def to_path(cls, path: str, *, bodies: bool = False) -> AccessLog:
        """``-`` for stdout, else a file opened for appending (0600, never a symbolic link)."""
        if path == "-":
            return cls(sys.stdout, bodies=bodies)
        fd = open_append(path)
        return cls(os.fdopen(fd, "a", encoding="utf-8"), bodies=bodies)

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
        """Queue one line; never blocks, never raises (a full disk or a stalled reader must
        not fail or slow the request)."""
        if self._thread is None:
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
            self._queue.put_nowait(json.dumps(line, separators=(",", ":")) + "\n")
        except queue.Full:
            self.dropped += 1
            if self.dropped == 1:
                self.on_warning(f"access log: {MAX_PENDING} lines waiting for the writer; "
                                "dropping lines until it catches up")  # fmt: skip

    def flush(self, timeout: float = CLOSE_WAIT) -> bool:
        """Wait (at most ``timeout`` seconds) until every queued line is written; False if
        some still wait."""
        deadline = time.monotonic() + timeout
        with self._queue.all_tasks_done:
            while self._queue.unfinished_tasks:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._queue.all_tasks_done.wait(left)
        return True

    def close(self) -> None:
        """Write what is queued (for at most ``CLOSE_WAIT`` seconds), stop the writer and
        close the file (never stdout or stderr)."""
        if self._thread is not None:
            try:
                self._queue.put(_STOP, timeout=CLOSE_WAIT)
            except queue.Full:
                pass
            self._thread.join(CLOSE_WAIT)
            self._thread = None
            if self.dropped:
                self.on_warning(f"access log: {self.dropped} lines dropped")
        if self.stream is not None and self.stream not in (sys.stdout, sys.stderr):
            try:
                self.stream.close()
            except OSError:
                pass

    def _run(self) -> None:
        stream = self.stream
        assert stream is not None
        while True:
            batch = [self._queue.get()]
            while batch[-1] is not _STOP and len(batch) < MAX_BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = batch[-1] is _STOP
            try:
                stream.write("".join(line for line in batch if line is not _STOP))
                stream.flush()
            except (OSError, ValueError):  # a full disk or a closed stream: lines are lost
                pass
            finally:
                for _ in batch:
                    self._queue.task_done()
            if stop:
                return
