"""``serve.log: true``: each gateway request recorded in the history database, as ``ask``
records its answers (read back with ``failover logs``).

An entry holds the upstream model, the chain the client's model selected, the provider, every
attempt, tokens, cost and latency (or why no provider answered); prompts and answers only when
the access log keeps bodies (``--log-bodies``); never a key or a header. SQLite is written by
one background thread from a bounded queue, so the event loop never waits for the disk; a
database that cannot be written gives one warning and the requests go on unrecorded.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..config import Config
from ..history import History, HistoryError, failure_fields, new_cid, result_fields
from ..types import RouteResult

MAX_PENDING = 1000  # entries waiting for the writer; beyond this they are dropped
CLOSE_WAIT = 5.0  # seconds shutdown waits for the writer to finish the queue
_STOP = object()


class GatewayHistory:
    """A writer thread appending gateway requests to the history database at ``path``."""

    def __init__(
        self,
        path: str | Path,
        config: Config,
        *,
        bodies: bool = False,
        on_warning: Callable[[str], None] | None = None,
    ) -> None:
        self.path = Path(path)
        self.config = config
        self.bodies = bodies
        self.on_warning = on_warning or logging.getLogger("failover.serve").warning
        self._queue: queue.Queue[Any] = queue.Queue(MAX_PENDING)
        self._warned = False
        self._failed = False  # the database could not be used: stop trying
        self._configs: dict[str, Config] = {}  # by chain label (aliases, providers: bounded)
        self._thread = threading.Thread(target=self._run, name="failover-history", daemon=True)
        self._thread.start()

    def record(
        self,
        *,
        chain: str,
        result: RouteResult | None,
        error: BaseException | str | None,
        messages: Sequence[Any] = (),
        latency_ms: float | None = None,
    ) -> None:
        """Queue one request: answered (``result``) or not (``error``). Never blocks, never
        raises (``messages`` are the request's :class:`~failover_cli.chat.Message` turns)."""
        if self._failed:
            return
        try:
            entry = self._entry(chain, result, error, messages, latency_ms)
        except Exception as exc:  # a request the history cannot describe must not fail
            self._warn(f"history: request not recorded: {type(exc).__name__}")
            return
        try:
            self._queue.put_nowait(entry)
        except queue.Full:
            self._warn(f"history: more than {MAX_PENDING} entries waiting; dropping some")

    def _entry(
        self,
        chain: str,
        result: RouteResult | None,
        error: BaseException | str | None,
        messages: Sequence[Any],
        latency_ms: float | None,
    ) -> dict[str, Any]:
        if result is not None:
            fields = result_fields(result)
        else:
            exc = error if isinstance(error, Exception) else _Failed(str(error or "no answer"))
            fields = failure_fields(exc)
            fields["latency_ms"] = None if latency_ms is None else round(latency_ms, 3)
        prompt, system = _texts(messages) if self.bodies else ("", None)
        if not self.bodies:
            fields["answer"] = ""
        return {"cid": new_cid(), "prompt": prompt, "system": system, "chain": chain, **fields}

    def close(self) -> None:
        """Write what is queued (for at most ``CLOSE_WAIT`` seconds) and stop the writer."""
        with contextlib.suppress(queue.Full):
            self._queue.put(_STOP, timeout=CLOSE_WAIT)
        self._thread.join(CLOSE_WAIT)

    def _run(self) -> None:
        db: History | None = None
        try:
            while True:
                entry = self._queue.get()
                if entry is _STOP:
                    return
                if self._failed:
                    continue
                try:
                    if db is None:
                        db = History(self.path, self.config.log)
                    db.record(config=self._labelled(entry.pop("chain")), **entry)
                except (HistoryError, OSError) as exc:
                    self._failed = True
                    self._warn(f"history not recorded: {exc}")
                except Exception as exc:  # never let the writer die silently
                    self._failed = True
                    self._warn(f"history not recorded: {type(exc).__name__}: {exc}")
        finally:
            if db is not None:
                with contextlib.suppress(HistoryError):
                    db.close()

    def _labelled(self, chain: str) -> Config:
        """The configuration as recorded: its file, and the chain the request selected."""
        config = self._configs.get(chain)
        if config is None:
            config = self._configs[chain] = replace(self.config, chain=chain)
        return config

    def _warn(self, message: str) -> None:
        if not self._warned:
            self._warned = True
            self.on_warning(message)


class _Failed(Exception):
    """A request no provider answered, as :func:`failure_fields` reads it."""


def _texts(messages: Sequence[Any]) -> tuple[str, str | None]:
    """The last user turn's text and the system prompt of the request's messages."""
    prompt, system = "", None
    for m in messages:
        role, text = getattr(m, "role", None), getattr(m, "text", "")
        if role == "system":
            system = text if system is None else f"{system}\n\n{text}"
        elif role == "user":
            prompt = text
    return prompt, system
