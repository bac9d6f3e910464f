"""The access log's writer thread: a stalled reader or disk never blocks the request that
logs, lines keep their order, a backlog is bounded, and close() writes what is queued."""

from __future__ import annotations

import io
import json
import threading

from failover_cli.serve import accesslog
from failover_cli.serve.accesslog import AccessLog


class StalledStream(io.StringIO):
    """A stream whose writes wait until ``release`` is set: a full pipe to a log collector."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()
        self.writing = threading.Event()

    def write(self, text: str) -> int:
        self.writing.set()
        assert self.release.wait(10), "the test never released the stream"
        return super().write(text)


def log_one(log: AccessLog, n: int) -> None:
    log.write(request_id=f"r{n}", method="POST", path="/v1/chat/completions", status=200,
              latency_ms=1.0)  # fmt: skip


def ids(text: str) -> list[str]:
    return [json.loads(line)["request_id"] for line in text.splitlines()]


def test_writes_return_while_the_stream_is_stalled_and_arrive_in_order() -> None:
    stream = StalledStream()
    log = AccessLog(stream)
    log_one(log, 0)
    assert stream.writing.wait(10)  # the writer thread is stuck inside write()
    for n in range(1, 50):  # each returns at once: the caller's thread never waits
        log_one(log, n)
    assert not log.flush(timeout=0.05)  # still queued behind the stalled write
    stream.release.set()
    assert log.flush()
    assert ids(stream.getvalue()) == [f"r{n}" for n in range(50)]
    assert log.dropped == 0
    log.close()


def test_a_backlog_beyond_the_bound_is_dropped_counted_and_warned_once(monkeypatch) -> None:
    monkeypatch.setattr(accesslog, "MAX_PENDING", 5)
    warnings: list[str] = []
    stream = StalledStream()
    log = AccessLog(stream, on_warning=warnings.append)
    log_one(log, 0)
    assert stream.writing.wait(10)  # line 0 is being written; 1..5 fill the queue
    for n in range(1, 20):
        log_one(log, n)
    assert log.dropped == 14
    assert len(warnings) == 1 and "dropping lines" in warnings[0]
    stream.release.set()
    assert log.flush()
    assert ids(stream.getvalue()) == [f"r{n}" for n in range(6)]
    log.close()
    assert warnings[-1] == "access log: 14 lines dropped"


def test_close_writes_what_is_queued_and_closes_the_file(tmp_path) -> None:
    path = tmp_path / "access.jsonl"
    log = AccessLog.to_path(str(path))
    for n in range(300):  # more than one batch
        log_one(log, n)
    log.close()
    assert ids(path.read_text()) == [f"r{n}" for n in range(300)]
    assert log.stream is not None and log.stream.closed
    log_one(log, 300)  # after close: nothing is written, nothing raised
    assert len(path.read_text().splitlines()) == 300


def test_a_stream_that_fails_loses_its_lines_not_the_writer() -> None:
    class Failing(io.StringIO):
        fail = True

        def write(self, text: str) -> int:
            if self.fail:
                raise OSError(28, "No space left on device")
            return super().write(text)

    stream = Failing()
    log = AccessLog(stream)
    log_one(log, 0)
    assert log.flush()
    stream.fail = False
    log_one(log, 1)
    assert log.flush()
    assert ids(stream.getvalue()) == ["r1"]
    log.close()


def test_no_stream_means_no_writer_thread() -> None:
    before = {t.name for t in threading.enumerate()}
    log = AccessLog()
    log_one(log, 0)
    assert log.flush(timeout=0)
    assert {t.name for t in threading.enumerate()} == before
    log.close()
