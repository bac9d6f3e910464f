"""Exactly-once under contention: 200 processes saving to one JSON state file at once lose
no outcome, and a journal line is merged exactly once even if its merger dies."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

from failover_cli.breaker import MAX_OUTCOMES
from failover_cli.state import ProviderDelta, StateDelta, load_document
from failover_cli.store import JsonFileStore
from failover_cli.store._journal import Journal, encode_line

T0 = 1_800_000_000.0
PROCESSES = 200

# One `failover ask`'s save, reduced to what matters: open the store, wait at the gate (a
# pipe every process reads until the test closes it), record one request and one outcome.
SAVE_ONCE = r"""
import os, sys
from failover_cli.state import StateDelta
from failover_cli.store import open_store
store = open_store(sys.argv[1])
delta = StateDelta()
p = delta.provider("p")
p.requests = p.successes = 1
p.outcomes = [(1_800_000_000.0 + int(sys.argv[2]), True)]
os.read(int(sys.argv[3]), 1)
store.update("chain", delta)
store.close()
"""


def requests_in_file(path: Path, chain: str = "chain", provider: str = "p") -> int:
    chains = load_document(json.loads(path.read_bytes()))
    return chains[chain].providers[provider].requests if chain in chains else 0


def test_two_hundred_processes_saving_at_once_lose_no_outcome(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    gate_r, gate_w = os.pipe()
    procs = []
    try:
        for i in range(PROCESSES):
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-c", SAVE_ONCE, str(path), str(i), str(gate_r)],
                    pass_fds=(gate_r,),
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                )
            )
    finally:
        os.close(gate_r)
        os.close(gate_w)  # every process passes the gate at once
    results = [(p.wait(timeout=120), *p.communicate()) for p in procs]
    assert [(code, err) for code, _, err in results if code or err] == []  # no warning at all

    state = JsonFileStore(path).load("chain").providers["p"]  # the file and its journal
    assert (state.requests, state.successes) == (PROCESSES, PROCESSES)
    kept = min(PROCESSES, MAX_OUTCOMES)
    assert sorted(t - T0 for t, _ in state.outcomes) == list(range(PROCESSES - kept, PROCESSES))
    # the next save merges whatever was journalled, once, and empties the journal
    after = JsonFileStore(path).update("chain", StateDelta({"p": ProviderDelta(requests=1)}))
    assert after.providers["p"].requests == PROCESSES + 1
    assert requests_in_file(path) == PROCESSES + 1
    journal = path.with_name("state.json.journal")
    assert not journal.exists() or journal.read_bytes() == b""


def journal_lines(path: Path, n: int, chain: str = "chain") -> None:
    """Append ``n`` one-request deltas to the journal, the way a blocked update does."""
    journal = Journal(path.with_name(path.name + ".journal"))
    for _ in range(n):
        journal.append(encode_line(chain, StateDelta({"p": ProviderDelta(requests=1)}))[1], 5)


def test_a_merger_that_dies_before_emptying_the_journal_merges_nothing_twice(
    tmp_path: Path,
) -> None:
    """The state file is written (listing the merged lines) before the journal is emptied;
    a crash in between leaves exactly that on disk, rebuilt here from the real files."""
    path = tmp_path / "state.json"
    store = JsonFileStore(path)
    store.update("chain", StateDelta({"p": ProviderDelta(requests=10)}))
    journal = path.with_name("state.json.journal")
    journal_lines(path, 5)
    kept = journal.read_bytes()
    assert store.update("other", StateDelta({"q": ProviderDelta(requests=1)})) is not None
    assert requests_in_file(path) == 15 and journal.read_bytes() == b""
    journal.write_bytes(kept)  # as if the merger died right after replacing the state file
    journal_lines(path, 2)  # and two more arrived after that

    fresh = JsonFileStore(path)
    assert fresh.load("chain").providers["p"].requests == 17  # the view counts each line once
    assert fresh.update("chain", StateDelta()).providers["p"].requests == 17
    assert requests_in_file(path) == 17 and journal.read_bytes() == b""
    fresh.update("chain", StateDelta({"p": ProviderDelta(requests=1)}))
    assert requests_in_file(path) == 18
    assert b'"journal"' not in path.read_bytes()  # merged ids are forgotten once emptied


def test_a_merger_that_dies_before_writing_the_state_loses_nothing(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    JsonFileStore(path).update("chain", StateDelta({"p": ProviderDelta(requests=10)}))
    journal_lines(path, 3)
    # A writer killed before its rename leaves only a temporary file behind.
    path.with_name(f"state.json.{'0' * 32}.tmp").write_bytes(b'{"half": ')
    assert JsonFileStore(path).update("chain", StateDelta()).providers["p"].requests == 13
    assert requests_in_file(path) == 13
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "state.json",
        "state.json.journal",
        "state.json.lock",
    ]


# Forks an appender (journal lines, as blocked updates write them) and a merger (updates in a
# loop, each merging the journal), SIGKILLs the merger at a random moment while both run,
# and reports how many lines were appended.
KILL_MERGER = r"""
import json, os, random, signal, sys, time
from failover_cli.state import ProviderDelta, StateDelta
from failover_cli.store import JsonFileStore
from failover_cli.store._journal import Journal, encode_line
path, lines, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
random.seed(seed)
ready_r, ready_w = os.pipe()
merger = os.fork()
if merger == 0:
    store = JsonFileStore(path)
    os.write(ready_w, b".")
    while True:
        store.update("chain", StateDelta({"m": ProviderDelta(requests=1)}))
os.read(ready_r, 1)
appender = os.fork()
if appender == 0:
    journal = Journal(__import__("pathlib").Path(path + ".journal"))
    for _ in range(lines):
        journal.append(encode_line("chain", StateDelta({"p": ProviderDelta(requests=1)}))[1], 30)
    os._exit(0)
time.sleep(random.uniform(0, 0.05))  # the kill lands at a random moment, not a test pause
os.kill(merger, signal.SIGKILL)
os.waitpid(merger, 0)
_, status = os.waitpid(appender, 0)
print(json.dumps(os.WEXITSTATUS(status)))
"""


def test_merging_is_exactly_once_when_the_merger_is_killed_at_random(tmp_path: Path) -> None:
    lines = 200
    for trial in range(20):
        directory = tmp_path / f"t{trial:02d}"
        directory.mkdir()
        path = directory / "state.json"
        done = subprocess.run(
            [sys.executable, "-c", KILL_MERGER, str(path), str(lines), str(random.randrange(9**9))],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0 and done.stdout.strip() == "0", done.stderr[-2000:]
        state = JsonFileStore(path).update("chain", StateDelta())
        assert state.providers["p"].requests == lines, trial
        assert requests_in_file(path) == lines
        shutil.rmtree(directory)
