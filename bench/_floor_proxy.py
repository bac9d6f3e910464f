"""The floor under any Python gateway here: the least an ASGI proxy on ``failover serve``'s
own HTTP server (uvicorn, httptools, asyncio's loop) can do per request.

    python bench/_floor_proxy.py PORT UPSTREAM_URL KEY [--uvicorn-protocol]

It relays each request's body to the upstream over a pool of kept-alive connections (one
pre-built request head, httptools parsing the answer) and relays the answer back, streamed
as it arrives, through the HTTP protocol class failover serve uses (one write per answer):
no JSON, no routing, no retries, no metrics, no log. bench_serve.py's ``floor`` target, so
that the latency a gateway adds can be split into what this server and runtime cost on the
machine and what the gateway's own work costs.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any
from urllib.parse import urlsplit

import httptools
import uvicorn

from failover_cli.serve.coalesce import protocol

_END = object()


class _Upstream(asyncio.Protocol):
    """One kept-alive connection to the upstream; its answer's body arrives on ``chunks``."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.chunks: asyncio.Queue[Any] = asyncio.Queue()
        self.transport: asyncio.Transport | None = None
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_done = asyncio.Event()
        self.alive = True
        self.reusable = False  # read when the answer is complete (llhttp forgets it after)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.alive = False
        self.head_done.set()
        self.chunks.put_nowait(_END)

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"content-type":
            self.headers.append((b"content-type", value))

    def on_headers_complete(self) -> None:
        self.head_done.set()

    def on_body(self, body: bytes) -> None:
        self.chunks.put_nowait(body)

    def on_message_complete(self) -> None:
        self.reusable = self.parser.should_keep_alive()
        self.chunks.put_nowait(_END)


class Floor:
    def __init__(self, upstream: str, key: str) -> None:
        parts = urlsplit(upstream)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.head = (
            f"POST /v1/chat/completions HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            f"Authorization: Bearer {key}\r\nContent-Type: application/json\r\n"
        ).encode()
        self.pool: list[_Upstream] = []

    async def _connection(self) -> _Upstream:
        while self.pool:
            conn = self.pool.pop()
            if conn.alive:
                return conn
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(_Upstream, self.host, self.port)
        return conn

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        try:
            conn = await self._connection()
        except OSError:
            await send({"type": "http.response.start", "status": 502, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        conn.headers, conn.head_done, conn.reusable = [], asyncio.Event(), False
        try:
            await self._relay(conn, body, send)
        finally:
            if conn.alive and conn.reusable:
                self.pool.append(conn)
            elif conn.transport is not None:
                conn.transport.close()

    async def _relay(self, conn: _Upstream, body: bytes, send: Any) -> None:
        assert conn.transport is not None
        conn.transport.write(self.head + b"Content-Length: %d\r\n\r\n" % len(body) + body)
        await conn.head_done.wait()
        status = conn.parser.get_status_code() if conn.alive else 502
        if any(b"event-stream" in value for _, value in conn.headers):  # relayed as it comes
            await send({"type": "http.response.start", "status": status, "headers": conn.headers})
            while (chunk := await conn.chunks.get()) is not _END:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        else:  # one body with its length, as failover serve answers
            parts = []
            while (chunk := await conn.chunks.get()) is not _END:
                parts.append(chunk)
            answer = b"".join(parts)
            headers = [*conn.headers, (b"content-length", b"%d" % len(answer))]
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": answer})


def main() -> None:
    port, upstream, key = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    # --uvicorn-protocol: uvicorn's own httptools protocol (two writes per answer), to compare
    http = "httptools" if "--uvicorn-protocol" in sys.argv[4:] else protocol()
    uvicorn.run(Floor(upstream, key), host="127.0.0.1", port=port, loop="asyncio",
                http=http, lifespan="off", access_log=False, log_level="warning",
                server_header=False)  # fmt: skip


if __name__ == "__main__":
    main()
