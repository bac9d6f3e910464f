"""The JSON file store under real processes: contention, SIGKILL, corruption, bad paths.

Child processes come from one helper interpreter (:data:`WORKERS`) that imports the store
once and forks the workers, so 50 processes cost about one interpreter start.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from failover_cli.breaker import MAX_OUTCOMES, BreakerSnapshot
from failover_cli.errors import StateError
from failover_cli.state import (
    SCHEMA_VERSION,
    ChainState,
    ProviderDelta,
    ProviderState,
    Sample,
    StateDelta,
    dump_document,
    load_document,
    merge_provider,
)
from failover_cli.store import JsonFileStore, open_store
from failover_cli.store._encode import ENCODE, _encode_reusing, encode_provider
from failover_cli.store._lockfile import file_lock

T0 = 1_800_000_000.0
HISTORY = 200  # samples kept in the crash trials' files

# The helper: forks workers that each open their own store, then reports their exit status.
WORKERS = r"""
import json, os, random, signal, sys, time, traceback
args = json.loads(sys.argv[1])
import filelock
from failover_cli.state import Sample, StateDelta
from failover_cli.store.jsonfile import JsonFileStore
if args["kind"] == "redis":
    import redis
    from failover_cli.store.redis import RedisStore

def open_store(target):
    if args["kind"] == "redis":
        # generous timeouts: these tests count lost updates under contention, on machines
        # whose load can stall a worker for seconds; the defaults are for a user's request
        return RedisStore(target, prefix=args["prefix"], socket_timeout=30, busy_limit=120)
    return JsonFileStore(target, lock_timeout=60)

def record(store, worker):
    # `updates` separate outcomes, each counted on a shared provider and on the worker's own.
    for i in range(args["updates"]):
        delta = StateDelta()
        shared = delta.provider("shared")
        shared.requests = shared.successes = 1
        own = delta.provider(f"w{worker:02d}")
        own.requests = 1
        own.outcomes = [(time.time(), True)]
        store.update("chain", delta)
    store.close()

def save_forever(store, worker):
    # Each save adds one request, one outcome and one sample, all timed by the request number.
    # After the first save the worker tells the helper it is saving (one byte on its pipe).
    n = store.load("chain").providers["p"].requests
    while True:
        delta = StateDelta(history=args["history"])
        p = delta.provider("p")
        p.requests = 1
        p.outcomes = [(args["t0"] + n, True)]
        p.samples = [Sample(args["t0"] + n, 100.0 + n % 7, 20.0, n, True)]
        store.update("chain", delta)
        if ready_w[worker] is not None:
            os.write(ready_w[worker], b".")
            os.close(ready_w[worker])
            ready_w[worker] = None
        n += 1

job = record if args["mode"] == "record" else save_forever
targets = args["targets"]
results = []
for start in range(0, len(targets), args["batch"]):
    gate_r, gate_w = os.pipe()
    pids = []
    ready_r, ready_w = {}, {}
    for worker in range(start, min(start + args["batch"], len(targets))):
        ready_r[worker], ready_w[worker] = os.pipe()
    for worker in range(start, min(start + args["batch"], len(targets))):
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                os.close(gate_w)
                store = open_store(targets[worker])
                os.read(gate_r, 1)  # every worker starts when the gate closes
                job(store, worker)
            except BaseException:
                traceback.print_exc()
                code = 1
            finally:
                os._exit(code)
        pids.append(pid)
    os.close(gate_r)
    os.close(gate_w)
    for fd in ready_w.values():
        os.close(fd)
    if args["mode"] == "crash":  # once all are saving, SIGKILL each at a random moment
        for fd in ready_r.values():
            if os.read(fd, 1) != b".":
                sys.exit("a worker died before its first save")
        opened = time.monotonic()
        for at, pid in sorted((random.uniform(0, args["kill_within"]), p) for p in pids):
            time.sleep(max(0.0, opened + at - time.monotonic()))
            os.kill(pid, signal.SIGKILL)
    for fd in ready_r.values():
        os.close(fd)
    for pid in pids:
        _, status = os.waitpid(pid, 0)
        results.append(-os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status))
print(json.dumps(results))
"""


def run_workers(**args: Any) -> list[int]:
    """Run :data:`WORKERS`; return each worker's exit status (negative: killed by signal)."""
    args = {"batch": 1000, "updates": 0, "history": 500, "t0": T0, "prefix": "", **args}
    done = subprocess.run(
        [sys.executable, "-c", WORKERS, json.dumps(args)],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    sys.stderr.write(done.stderr[-3000:])  # a failed worker's traceback, shown on failure
    return json.loads(done.stdout)


def leftovers(path: Path) -> list[Path]:
    """Temporary files beside the state file (``state.json.<random>.tmp``)."""
    return sorted(path.parent.glob(f"{path.name}.*.tmp"))


def one_provider(name: str = "p", **fields: Any) -> StateDelta:
    return StateDelta(providers={name: ProviderDelta(**fields)})


# --- many processes, one file ----------------------------------------------------------------


@pytest.fixture
def fast_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory in memory (tmpfs) when there is one: the contention test is about
    locking, and fsync there costs nothing, so a busy disk does not slow it down.
    Elsewhere, ``tmp_path``."""
    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        yield tmp_path
        return
    directory = Path(tempfile.mkdtemp(prefix="failover-test-", dir=shm))
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def assert_all_counted(state: ChainState, processes: int, updates: int) -> None:
    shared = state.providers["shared"]
    assert (shared.requests, shared.successes) == (processes * updates, processes * updates)
    own = {n: (p.requests, len(p.outcomes)) for n, p in state.providers.items() if n != "shared"}
    assert own == {f"w{i:02d}": (updates, updates) for i in range(processes)}


def test_fifty_processes_lose_no_update(fast_dir: Path) -> None:
    path = fast_dir / "state.json"
    codes = run_workers(kind="json", mode="record", targets=[str(path)] * 50, updates=20)
    assert codes == [0] * 50
    assert_all_counted(JsonFileStore(path).load("chain"), 50, 20)


def test_sigkill_during_saves_leaves_an_old_or_new_complete_state(tmp_path: Path) -> None:
    """On the real disk: there the write and fsync take long enough that many kills land in
    the middle of a write, which the test checks happened."""
    trials = 100
    initial = 150
    paths = []
    samples = [Sample(T0 + n, 100.0 + n % 7, 20.0, n, True) for n in range(initial)]
    outcomes = [(T0 + n, True) for n in range(initial)]
    delta = one_provider(requests=initial, samples=samples, outcomes=outcomes)
    delta.history = HISTORY
    for name in ("other-1", "other-2"):  # make each save write a bigger file
        delta.providers[name] = ProviderDelta(requests=1, samples=samples)
    first = tmp_path / "first" / "state.json"
    JsonFileStore(first).update("chain", delta)
    for i in range(trials):
        path = tmp_path / f"t{i:03d}" / "state.json"
        path.parent.mkdir()
        shutil.copyfile(first, path)
        paths.append(path)

    codes = run_workers(
        kind="json",
        mode="crash",
        targets=[str(p) for p in paths],
        batch=10,
        kill_within=0.05,
        history=HISTORY,
    )
    assert codes == [-9] * trials  # every child died by SIGKILL, none by an error

    killed_after_one = 0
    # A leftover temporary file means that worker died in the middle of a write.
    killed_mid_write = sum(bool(leftovers(p)) for p in paths)
    for path in paths:
        doc = json.loads(path.read_bytes())  # always parses: never a partial file
        p = load_document(doc)["chain"].providers["p"]
        saves = p.requests - initial
        assert saves >= 1  # each worker was killed after its first save
        killed_after_one += saves == 1
        # complete: every counter and history agrees with the number of saves
        assert [s.t - T0 for s in p.samples] == list(
            range(max(0, p.requests - HISTORY), p.requests)
        )
        assert [t - T0 for t, _ in p.outcomes] == list(
            range(max(0, p.requests - MAX_OUTCOMES), p.requests)
        )
        assert not list(path.parent.glob("*.corrupt-*"))
        # and the next process carries on from there
        warnings: list[str] = []
        after = JsonFileStore(path, on_warning=warnings.append).update(
            "chain", one_provider(requests=1)
        )
        assert after.providers["p"].requests == p.requests + 1
        assert warnings == []
        assert leftovers(path) == []  # the next writer removed the dead one's temporary file
    assert killed_after_one < trials  # the kills did land at different moments
    assert killed_mid_write > 0  # and some in the middle of writing the file


# --- unreadable files ------------------------------------------------------------------------


CORRUPT = {
    "garbage bytes": b"\x00\xff\xfe garbage \x00\x01",
    "truncated JSON": b'{"schema":1,"chains":{\n"c":{"providers":{\n"p":{"requests":3,"samp',
    "a JSON list": b"[1, 2, 3]",
    "a foreign object": b'{"hello": "world"}',
    "an empty file": b"",
    "a boolean schema": b'{"schema":true,"chains":{}}',
}


@pytest.mark.parametrize("kind", list(CORRUPT))
@pytest.mark.parametrize("via", ["load", "update"])
def test_unreadable_file_is_moved_aside_and_a_fresh_state_starts(
    tmp_path: Path, kind: str, via: str
) -> None:
    path = tmp_path / "state.json"
    path.write_bytes(CORRUPT[kind])
    warnings: list[str] = []
    store = JsonFileStore(path, on_warning=warnings.append)
    if via == "load":
        assert store.load("c").providers == {}
        assert not path.exists()
    else:
        state = store.update("c", one_provider(requests=1))
        assert state.providers["p"].requests == 1
    (moved,) = tmp_path.glob("state.json.corrupt-*")
    assert moved.read_bytes() == CORRUPT[kind]  # the original bytes, kept
    assert len(moved.name) == len("state.json.corrupt-20250101T000000Z")
    assert len(warnings) == 1 and "\n" not in warnings[0]
    assert str(moved) in warnings[0]
    store.update("c", one_provider(requests=2))
    assert JsonFileStore(path, on_warning=warnings.append).load("c").providers["p"].requests == (
        2 if via == "load" else 3
    )
    assert len(warnings) == 1


def test_a_second_corrupt_file_does_not_overwrite_the_first(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    store = JsonFileStore(path, on_warning=lambda _m: None)
    for garbage in (b"first", b"second", b"third"):
        path.write_bytes(garbage)
        store.load("c")
    moved = sorted(tmp_path.glob("state.json.corrupt-*"))
    assert sorted(p.read_bytes() for p in moved) == [b"first", b"second", b"third"]


@pytest.mark.parametrize("chains", [{"c": {"x": 1}}, [{"name": "c"}]], ids=["same", "new shape"])
def test_file_from_a_newer_failover_is_left_alone(tmp_path: Path, chains: Any) -> None:
    path = tmp_path / "state.json"
    original = json.dumps({"schema": SCHEMA_VERSION + 1, "chains": chains}).encode()
    path.write_bytes(original)
    warnings: list[str] = []
    store = JsonFileStore(path, on_warning=warnings.append)
    assert store.load("c").providers == {}
    assert store.load("c").providers == {}
    assert len(warnings) == 1 and "newer failover" in warnings[0]
    with pytest.raises(StateError, match="newer failover"):
        store.update("c", one_provider(requests=1))
    with pytest.raises(StateError, match="newer failover"):
        store.reset("c")
    assert path.read_bytes() == original
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json", "state.json.lock"]


def test_older_layout_and_other_chains_are_kept(tmp_path: Path) -> None:
    """A file in plain dump_document form (no line layout) is read; other chains survive."""
    path = tmp_path / "state.json"
    other = ChainState()
    other.providers["q"] = load_document(
        {"schema": 1, "chains": {"x": {"providers": {"q": {"requests": 9}}}}}
    )["x"].providers["q"]
    path.write_text(json.dumps(dump_document({"other": other}), indent=2))
    store = JsonFileStore(path)
    store.update("mine", one_provider(requests=4))
    chains = load_document(json.loads(path.read_bytes()))
    assert chains["other"].to_dict() == other.to_dict()
    assert chains["mine"].providers["p"].requests == 4
    store.reset("mine")
    assert list(load_document(json.loads(path.read_bytes()))) == ["other"]


# One bad chain in a shared file: dropped alone; every other chain loads and is written back.
BAD_CHAINS = {
    "a malformed chain": b'{"providers":{"p":{"samples":"nope"}}}',
    "an infinite counter": b'{"providers":{"p":{"requests":1e400}}}',
    "a text last_error": b'{"providers":{"p":{"last_error":"boom"}}}',
    "an endless open breaker": b'{"providers":{"p":{"breaker":{"open_until":Infinity}}}}',
    "a NaN latency": b'{"providers":{"p":{"samples":[[1800000000,NaN,null,1,true]]}}}',
    "not a chain": b'"c"',
    "a list of providers": b'{"providers":[1]}',
}


def shared_file(bad: bytes) -> bytes:
    """A state file with chain ``c`` as ``bad`` between two good chains."""
    good = ChainState({"q": ProviderState(requests=9, outcomes=[(T0, True)])})
    doc = dump_document({"before": good, "after": good})
    text = json.dumps(doc).encode()
    marker = b'"after":'
    return text.replace(marker, b'"c":' + bad + b"," + marker)


@pytest.mark.parametrize("kind", list(BAD_CHAINS))
@pytest.mark.parametrize("via", ["load", "update", "update another chain"])
def test_a_malformed_chain_is_dropped_alone_and_the_others_are_kept(
    tmp_path: Path, kind: str, via: str
) -> None:
    path = tmp_path / "state.json"
    original = shared_file(BAD_CHAINS[kind])
    path.write_bytes(original)
    warnings: list[str] = []
    store = JsonFileStore(path, on_warning=warnings.append)
    if via == "load":
        assert store.load("c").providers == {}
    elif via == "update":
        assert store.update("c", one_provider(requests=1)).providers["p"].requests == 1
    else:
        assert store.update("before", one_provider("q", requests=1)).providers["q"].requests == 10
    copies = list(tmp_path.glob("state.json.corrupt-*"))
    if copies:  # found: dropped, with the original kept beside and one warning
        assert copies[0].read_bytes() == original
        assert len(warnings) == 1 and "\n" not in warnings[0]
        assert "'c'" in warnings[0] and str(copies[0]) in warnings[0]
    else:  # a chain nobody decoded is written back as it was, until its owner reads it
        assert via == "update another chain" and warnings == []
        assert json.loads(path.read_bytes())["chains"]["c"] == json.loads(BAD_CHAINS[kind])
    chains = load_document(json.loads(path.read_bytes()))
    assert set(chains) == {"before", "after"} | ({"c"} if via == "update" else set())
    assert chains["after"].providers["q"].requests == 9
    assert chains["before"].providers["q"].requests == (10 if via == "update another chain" else 9)
    assert b"NaN" not in path.read_bytes() and b"Infinity" not in path.read_bytes()
    fresh: list[str] = []
    again = JsonFileStore(path, on_warning=fresh.append)
    assert again.load("after").providers["q"].requests == 9
    again.update("c", one_provider(requests=2))
    assert again.load("c").providers["p"].requests == (3 if via == "update" else 2)
    assert len(fresh) == (0 if copies else 1)
    (copy,) = tmp_path.glob("state.json.corrupt-*")  # the bad chain is kept there, as it was
    assert json.loads(copy.read_bytes())["chains"]["c"] == json.loads(BAD_CHAINS[kind])


def test_the_writer_never_emits_nan_or_infinity(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    inf = float("inf")
    delta = one_provider(
        requests=2,
        outcomes=[(T0, True), (float("nan"), False)],
        samples=[Sample(T0, inf)],
        breaker=BreakerSnapshot(state="open", opened_at=T0, open_until=inf, updated_at=T0),
        last_error={"at": T0, "class": "transient", "status": 503, "message": "x", "wait": inf},
    )
    state = JsonFileStore(path).update("c", delta)
    text = path.read_bytes()
    json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} written"))
    p = JsonFileStore(path).load("c").providers["p"]
    assert p == state.providers["p"]
    assert (p.requests, p.outcomes, p.samples, p.breaker.open_until) == (2, [(T0, True)], [], None)


# --- paths that cannot be written ------------------------------------------------------------


def test_path_below_a_regular_file_raises_state_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_bytes(b"keep me")
    store = JsonFileStore(blocker / "state.json")
    with pytest.raises(StateError, match="not-a-dir"):
        store.update("c", one_provider(requests=1))
    with pytest.raises(StateError, match="cannot read state file"):
        store.load("c")
    assert blocker.read_bytes() == b"keep me"


# A write that fails half-way: the file-size limit (RLIMIT_FSIZE) stops the temporary file.
WRITE_PAST_LIMIT = r"""
import resource, signal, sys
from failover_cli.errors import StateError
from failover_cli.state import Sample, StateDelta
from failover_cli.store.jsonfile import JsonFileStore
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # fail the write with EFBIG instead of dying
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[2]), resource.RLIM_INFINITY))
delta = StateDelta()
delta.provider("p").samples = [Sample(1.8e9 + i, 1.0) for i in range(500)]
try:
    JsonFileStore(sys.argv[1]).update("c", delta)
except StateError as exc:
    print(exc)
"""


def test_a_failed_write_raises_and_keeps_the_state(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    JsonFileStore(path).update("c", one_provider(requests=5))
    before = path.read_bytes()
    done = subprocess.run(
        [sys.executable, "-c", WRITE_PAST_LIMIT, str(path), str(len(before) + 100)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"cannot write state file {path}: File too large")
    assert path.read_bytes() == before
    assert leftovers(path) == []  # the half-written temporary file was removed


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_read_only_directory_raises_and_keeps_the_state(tmp_path: Path) -> None:
    directory = tmp_path / "ro"
    path = directory / "state.json"
    JsonFileStore(path).update("c", one_provider(requests=5))
    before = path.read_bytes()
    (directory / "state.json.lock").unlink()
    directory.chmod(0o500)
    try:
        with pytest.raises(StateError):
            JsonFileStore(path).update("c", one_provider(requests=1))
        assert JsonFileStore(path).load("c").providers["p"].requests == 5
    finally:
        directory.chmod(0o700)
    assert path.read_bytes() == before


def test_directory_in_place_of_the_file_raises_state_error(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.mkdir()
    (path / "inside").write_bytes(b"x")
    store = JsonFileStore(path)
    with pytest.raises(StateError):
        store.load("c")
    with pytest.raises(StateError):
        store.update("c", one_provider(requests=1))
    assert (path / "inside").read_bytes() == b"x"


# --- the lock --------------------------------------------------------------------------------

HOLD_LOCK = r"""
import sys
from filelock import FileLock
with FileLock(sys.argv[1]):
    print("locked", flush=True)
    sys.stdin.read()
"""


def test_an_update_that_cannot_have_the_lock_is_journalled_not_dropped(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    JsonFileStore(path).update("c", one_provider(requests=1))
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, f"{path}.lock"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        warnings: list[str] = []
        store = JsonFileStore(path, lock_timeout=0.2, on_warning=warnings.append)
        started = time.monotonic()
        assert store.update("c", one_provider(requests=1)).providers["p"].requests == 2
        assert store.update("c", one_provider(requests=4)).providers["p"].requests == 6
        assert time.monotonic() - started < 2.0
        assert len(path.with_name("state.json.journal").read_bytes().splitlines()) == 4
        assert stat.S_IMODE(path.with_name("state.json.journal").stat().st_mode) == 0o600
        with pytest.raises(StateError) as caught:
            store.reset("c")  # a reset is not journalled
        assert str(caught.value) == (
            "state file locked by another process for more than 0.2s: state not reset"
        )
        assert JsonFileStore(path).load("c").providers["p"].requests == 6  # readers see both
        assert load_document(json.loads(path.read_bytes()))["c"].providers["p"].requests == 1
        assert warnings == []
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=10)
    # the next lock holder merges the journal once, and empties it
    assert JsonFileStore(path).update("c", one_provider(requests=1)).providers["p"].requests == 7
    assert path.with_name("state.json.journal").read_bytes() == b""
    assert load_document(json.loads(path.read_bytes()))["c"].providers["p"].requests == 7
    assert JsonFileStore(path).load("c").providers["p"].requests == 7


def test_the_lock_excludes_other_holders_and_frees_on_release(tmp_path: Path) -> None:
    path = str(tmp_path / "state.json.lock")
    first, second = file_lock(path), file_lock(path)
    assert first.try_acquire()
    assert not second.try_acquire()  # another open file: excluded even in the same process
    first.release()
    assert second.try_acquire()
    with pytest.raises(RuntimeError, match="already held"):
        second.try_acquire()
    second.release()
    second.release()  # releasing an unheld lock is harmless


def test_a_lock_holder_that_dies_frees_the_lock(tmp_path: Path) -> None:
    path = tmp_path / "state.json.lock"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert holder.stdout is not None and holder.stdout.readline() == b"locked\n"
    lock = file_lock(str(path))
    assert not lock.try_acquire()
    holder.kill()
    holder.wait(timeout=10)
    assert lock.try_acquire()
    lock.release()


# --- files, modes, layout --------------------------------------------------------------------


def test_file_and_new_directory_are_private(tmp_path: Path) -> None:
    path = tmp_path / "new" / "deeper" / "state.json"
    JsonFileStore(path).update("c", one_provider(requests=1))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(Path(f"{path}.lock").stat().st_mode) == 0o600
    assert sorted(p.name for p in path.parent.iterdir()) == ["state.json", "state.json.lock"]


def test_a_readable_file_becomes_private_on_the_next_write(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text(json.dumps(dump_document({})))
    path.chmod(0o644)
    JsonFileStore(path).update("c", one_provider(requests=1))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_file_is_the_compact_state_document(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    store = JsonFileStore(path)
    store.update("a", one_provider("x", requests=1, samples=[Sample(T0, 1.5)]))
    merged = store.update("b", one_provider("y", requests=2))
    text = path.read_text()
    assert ": " not in text and ", " not in text
    chains = load_document(json.loads(text))
    assert chains["b"].to_dict() == merged.to_dict()
    assert chains["a"].providers["x"].samples == [Sample(T0, 1.5)]


def provider_lines(path: Path) -> dict[str, bytes]:
    """Each provider's line of the file (the file's one-provider-a-line layout)."""
    lines = {}
    for line in path.read_bytes().split(b"\n"):
        if line.startswith(b'"') and not line.endswith(b'{"providers":{'):
            name, _, text = line.rstrip(b",").partition(b":")
            lines[json.loads(name)] = text
    return lines


def test_saves_write_exactly_the_state_document(tmp_path: Path) -> None:
    """Saves re-encode only new history entries, yet every line is exactly the provider's
    ``to_dict()`` JSON, whether the previous text came from this store or from the file."""
    rng = random.Random(11)
    path = tmp_path / "state.json"
    store = JsonFileStore(path)
    clock = T0
    for step in range(60):
        if step % 7 == 0:
            store = JsonFileStore(path)  # the next save starts from the file's text
        delta = StateDelta(history=rng.choice([5, 20, 500]))
        for name in rng.sample(["a", "b", "c"], rng.randint(1, 2)):
            clock += rng.randint(1, 3000) / 1000
            late = rng.random() < 0.2  # entries older than some stored ones: a re-sort
            t = clock - (5 if late else 0)
            delta.providers[name] = ProviderDelta(
                requests=1,
                successes=rng.randint(0, 1),
                outcomes=[(t, rng.random() < 0.8)],
                samples=[Sample(t, rng.randint(1, 9_999_999) / 1000, None, step)],
            )
        merged = store.update("chain", delta)
        lines = provider_lines(path)
        assert set(lines) == set(merged.providers)
        for name, state in merged.providers.items():
            assert lines[name] == ENCODE(state.to_dict()).encode(), (step, name)


def test_an_appended_entry_reuses_the_previous_text() -> None:
    old = ProviderState(
        outcomes=[(T0 + i, i % 4 != 0) for i in range(1000)],
        samples=[Sample(T0 + i, 100.5 + i, 20.25, i) for i in range(500)],
        requests=1000,
    )
    text = encode_provider(old)
    delta = ProviderDelta(
        requests=1, outcomes=[(T0 + 1000, False)], samples=[Sample(T0 + 1000, 1.5)]
    )
    new = merge_provider(old, delta, 500)
    reused = _encode_reusing(new, old, text)
    assert reused is not None
    assert reused == ENCODE(new.to_dict()).encode()
    assert json.loads(reused)["consecutive_failures"] == 1
    # a text that does not belong to ``old`` is not reused
    assert _encode_reusing(new, old, encode_provider(ProviderState())) is None


def test_load_sees_writes_by_another_store(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    reader, writer = JsonFileStore(path), JsonFileStore(path)
    assert reader.load("c").providers == {}
    writer.update("c", one_provider(requests=1))
    assert reader.load("c").providers["p"].requests == 1
    writer.update("c", one_provider(requests=1))
    assert reader.load("c").providers["p"].requests == 2
    assert reader.update("c", one_provider(requests=1)).providers["p"].requests == 3


# --- open_store ------------------------------------------------------------------------------


def test_open_store_defaults_to_the_user_state_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    store = open_store(None)
    assert isinstance(store, JsonFileStore)
    assert store.path == tmp_path / "xdg" / "failover" / "state.json"


def test_open_store_takes_a_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    store = open_store("~/s/state.json")
    assert isinstance(store, JsonFileStore)
    assert store.path == tmp_path / "s" / "state.json"
    with pytest.raises(StateError, match="empty"):
        open_store("  ")


def test_json_store_does_not_import_redis(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from failover_cli.store import open_store\n"
        "from failover_cli.state import StateDelta\n"
        "s = open_store(sys.argv[1])\n"
        "d = StateDelta(); d.provider('p').requests = 1\n"
        "s.update('c', d); s.load('c')\n"
    )
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code, str(tmp_path / "state.json")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines()}
    assert "failover_cli.store.jsonfile" in imported
    assert not {m for m in imported if m == "redis" or m.startswith("redis.")}
    assert "failover_cli.store.redis" not in imported
