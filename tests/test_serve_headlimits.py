"""The bounds on a request's head (failover_cli/serve/headlimits.py), over real sockets to
a gateway on 127.0.0.1: a connection that sends no head, or sends it too slowly, is answered
408 and closed; a head too large is answered 431; ordinary requests, kept-alive ones and a
head that arrives in pieces within the limit are served."""

from __future__ import annotations

import json
import socket
import time

import pytest
from conftest import provider
from test_serve_app import gateway

from failover_cli.serve import headlimits

__all__ = ["gateway"]  # a fixture


@pytest.fixture
def quick(monkeypatch):
    """A head limit of 0.3 s, swept every 0.05 s (the module reads both when it sweeps)."""
    monkeypatch.setattr(headlimits, "HEAD_TIMEOUT", 0.3)
    monkeypatch.setattr(headlimits, "SWEEP_INTERVAL", 0.05)


def connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=5)
    return sock


def answer_of(sock: socket.socket) -> tuple[int, bytes]:
    """The status and body of the answer on ``sock``, read until the server closes it."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body


REQUEST = (
    b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    b"Content-Length: %d\r\n\r\n%s"
)
BODY = json.dumps({"model": "default", "messages": [{"role": "user", "content": "Hi"}]}).encode()


def test_a_connection_that_sends_no_head_is_answered_408_and_closed(gateway, sim, quick):
    gw = gateway(provider("a", sim("openai")))
    with connect(gw.url) as idle, connect(gw.url) as slow:
        slow.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")  # then nothing
        for sock in (idle, slow):
            status, body = answer_of(sock)  # the server closes it: recv returns b""
            assert status == 408
            assert "took longer than 0.3 s" in json.loads(body)["error"]["message"]
    assert gw.post("/v1/chat/completions", {"model": "default", "messages": [
        {"role": "user", "content": "Hi"}]}).status_code == 200  # fmt: skip


def test_a_head_larger_than_the_limit_is_answered_431(gateway, sim):
    gw = gateway(provider("a", sim("openai")))
    with connect(gw.url) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        filler = b"X-Filler: " + b"a" * 1000 + b"\r\n"
        try:
            for _ in range(headlimits.MAX_HEAD_BYTES // len(filler) + 2):
                sock.sendall(filler)
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused while sending: the answer is still there to read
        status, body = answer_of(sock)
    assert status == 431 and "larger than" in json.loads(body)["error"]["message"]


def test_heads_within_the_limits_are_served_kept_alive_and_in_pieces(gateway, sim, quick):
    gw = gateway(provider("a", sim("openai")))
    with connect(gw.url) as sock:
        request = REQUEST % (len(BODY), BODY)
        for _ in range(2):  # kept alive: the second head is timed from its own first byte
            for i in range(0, len(request), 40):  # in pieces, well within 0.3 s
                sock.sendall(request[i : i + 40])
                time.sleep(0.005)  # pacing the pieces, not proving timing
            data = b""
            while b'"chat.completion"' not in data:
                data += sock.recv(65536)
            assert data.startswith(b"HTTP/1.1 200")
            time.sleep(0.4)  # idle between requests longer than the head limit: not refused
