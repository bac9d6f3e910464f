"""``ask`` opens the history in a thread while its request is on its way, so the wait for the
answer hides most of what recording costs; whatever happens there, the turn is written by the
main thread afterwards, or costs one warning."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from failover_cli.cli import conversation
from failover_cli.cli.conversation import Conversation
from failover_cli.config import parse_config
from failover_cli.errors import AllProvidersFailed
from failover_cli.history import History


def config(path: Path, log: str = ""):
    return parse_config(
        f"providers: [{{name: gpt, kind: openai, model: m}}]\nlog: {{path: '{path}'{log}}}\n"
    )


def failed() -> AllProvidersFailed:
    return AllProvidersFailed("gpt: transient 503", reason="failed")


def prompts(path: Path) -> list[str]:
    with History(path) as h:
        return [e.prompt for e in h.entries()]


def test_the_history_is_opened_in_another_thread_and_written_after(tmp_path, monkeypatch):
    path = tmp_path / "history.db"
    opened_in: list[str] = []
    real_open = History._open

    def spy(self, any_thread):
        opened_in.append(threading.current_thread().name)
        return real_open(self, any_thread)

    monkeypatch.setattr(History, "_open", spy)
    talk = Conversation.start(config(path))
    talk.open_early()
    talk.record_failure("first", None, failed())
    assert opened_in == ["failover-history"]
    talk.record_failure("second", None, failed())  # a later turn opens it where it is
    assert opened_in == ["failover-history", "MainThread"]
    monkeypatch.setattr(History, "_open", real_open)
    assert sorted(prompts(path)) == ["first", "second"]


@pytest.mark.parametrize("off", ["no_log", "env", "config"])
def test_an_unrecorded_call_opens_nothing_early(tmp_path, monkeypatch, off):
    path = tmp_path / "history.db"
    if off == "env":
        monkeypatch.setenv("FAILOVER_LOG", "0")
    cfg = config(path, ", enabled: false" if off == "config" else "")
    talk = Conversation.start(cfg, no_log=off == "no_log")
    talk.open_early()
    if talk._opening is not None:
        talk._opening._thread.join(5)
    talk.record_failure("secret plans", None, failed())
    assert not path.exists()


def test_a_history_that_cannot_be_opened_early_costs_one_warning(tmp_path, capsys):
    path = tmp_path / "history.db"
    path.symlink_to(tmp_path / "elsewhere.db")
    talk = Conversation.start(config(path))
    talk.open_early()
    talk.record_failure("kept?", None, failed())
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "history not written" in err[0] and "refused" in err[0]
    assert not (tmp_path / "elsewhere.db").exists()


def test_an_opening_that_hangs_is_waited_for_boundedly(tmp_path, monkeypatch, capsys):
    release = threading.Event()
    real_init = History.__init__

    def stuck(self, *args, **kwargs):
        release.wait(10)
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(History, "__init__", stuck)
    monkeypatch.setattr(conversation, "OPEN_WAIT", 0.05)
    talk = Conversation.start(config(tmp_path / "history.db"))
    talk.open_early()
    talk.record_failure("slow disk", None, failed())
    release.set()
    assert "history not written: still opening after 0.05 s" in capsys.readouterr().err


def test_the_router_listener_opens_it_once_the_first_attempt_starts(tmp_path):
    """Before the first attempt, ``ask`` is busy (importing, building the client): a thread
    opening the history then would take turns with it for the one interpreter lock."""
    from failover_cli.types import AttemptStarted, ProviderSkipped

    path = tmp_path / "history.db"
    talk = Conversation.start(config(path))
    talk.on_event(ProviderSkipped("claude", "breaker open"))
    assert talk._opening is None
    talk.on_event(AttemptStarted("gpt", 1))
    opening = talk._opening
    assert opening is not None
    talk.on_event(AttemptStarted("gpt", 2))
    assert talk._opening is opening
    talk.record_failure("asked", None, failed())
    assert talk._opening is None and prompts(path) == ["asked"]
