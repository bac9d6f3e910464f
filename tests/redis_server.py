"""A private, throw-away ``redis-server`` on 127.0.0.1 for the Redis store tests and benchmark.

Import the fixture into a test module (``from redis_server import redis_url``). Under
pytest-xdist each worker process starts its own server; within one process every module
shares one. Without the binary the tests are skipped, except on CI (``CI`` set), where they
fail: CI must run them.
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator

import pytest

START_TIMEOUT = 10.0  # seconds for a server to answer PING
PORT_ATTEMPTS = 5  # free ports tried before giving up (another process may grab one)


class RedisServer:
    """One running ``redis-server`` process; :meth:`stop` ends it and removes its directory."""

    def __init__(self, binary: str) -> None:
        self.dir = tempfile.mkdtemp(prefix="failover-redis-")
        self.log = os.path.join(self.dir, "redis.log")
        last_error = "not started"
        for _ in range(PORT_ATTEMPTS):
            self.port = free_port()
            self.process = subprocess.Popen(
                [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--dir", self.dir, "--logfile", self.log,
                 "--protected-mode", "no", "--daemonize", "no"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                preexec_fn=_death_signal_setter(),
            )  # fmt: skip
            last_error = self._wait_until_up()
            if not last_error:
                return
            self.stop(remove_dir=False)
        shutil.rmtree(self.dir, ignore_errors=True)
        raise RuntimeError(f"redis-server did not start: {last_error}")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _wait_until_up(self) -> str:
        """'' once our server answers; otherwise why not (it died, e.g. the port was taken)."""
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return f"exited with {self.process.returncode}: {self._log_tail()}"
            pid = server_pid(self.port)
            if pid == self.process.pid:
                return ""
            if pid is not None:  # another server has this port: try the next one
                self.process.kill()
            time.sleep(0.01)
        return f"no answer within {START_TIMEOUT:g}s"

    def _log_tail(self) -> str:
        try:
            with open(self.log, errors="replace") as f:
                return " ".join(f.read().split())[-300:]
        except OSError:
            return "(no log)"

    def stop(self, *, remove_dir: bool = True) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        if remove_dir:
            shutil.rmtree(self.dir, ignore_errors=True)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listened on a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_pid(port: int, timeout: float = 0.5) -> int | None:
    """The process id of the Redis server answering on ``port``, if one does."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(b"INFO server\r\n")
            reply = b""
            while b"process_id:" not in reply or not reply.endswith(b"\r\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                reply += chunk
    except OSError:
        return None
    found = re.search(rb"process_id:(\d+)", reply)
    return int(found.group(1)) if found else None


def find_binary() -> str | None:
    return shutil.which("redis-server") or (
        "/usr/bin/redis-server" if os.path.exists("/usr/bin/redis-server") else None
    )


def _death_signal_setter() -> Callable[[], None] | None:
    """Linux: a pre-exec hook that has the kernel kill the server if this process dies
    without cleaning up. Resolved here, in the parent, so the child only calls into C."""
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return lambda: prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


# --- one shared server per process, reference-counted -----------------------------------------

_lock = threading.Lock()
_shared: RedisServer | None = None
_users = 0


def acquire_server() -> RedisServer:
    """Start (or reuse) this process's server; pair with :func:`release_server`."""
    global _shared, _users
    with _lock:
        if _shared is None:
            binary = find_binary()
            if binary is None:
                raise FileNotFoundError("redis-server not found on PATH or at /usr/bin")
            _shared = RedisServer(binary)
            atexit.register(_stop_shared)
        _users += 1
        return _shared


def release_server() -> None:
    global _users
    with _lock:
        _users -= 1
        if _users <= 0:
            _stop_shared_locked()


def _stop_shared() -> None:
    with _lock:
        _stop_shared_locked()


def _stop_shared_locked() -> None:
    global _shared, _users
    if _shared is not None:
        _shared.stop()
    _shared, _users = None, 0


def skip_or_fail(reason: str) -> None:
    """Skip locally; on CI (``CI`` set) fail, because CI must run the Redis tests."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set, so the Redis tests must run)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """URL of a private redis-server, started for this test process and stopped after it."""
    try:
        import redis  # noqa: F401
    except ImportError:
        skip_or_fail("the redis package is not installed (pip install -e '.[test]')")
    try:
        server = acquire_server()
    except FileNotFoundError:
        skip_or_fail("redis-server is not installed (apt-get install redis-server)")
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield server.url
    finally:
        release_server()
