"""A continued conversation sends at most a bounded size of earlier turns, newest first."""

from __future__ import annotations

import pytest

from failover_cli.cli import conversation
from failover_cli.cli.conversation import Conversation
from failover_cli.config import parse_config
from failover_cli.history import Entry, newest_within


def turn(i: int, size: int) -> Entry:
    return Entry(i, "c1", float(i), "p" * size, None, "a" * size, "gpt", "m")


def test_newest_within_keeps_the_newest_turns_that_fit():
    turns = [turn(i, 10) for i in range(5)]  # 20 characters each
    assert [t.id for t in newest_within(turns, 100)] == [0, 1, 2, 3, 4]
    assert [t.id for t in newest_within(turns, 60)] == [2, 3, 4]
    assert [t.id for t in newest_within(turns, 59)] == [3, 4]
    assert [t.id for t in newest_within([turn(0, 1000)], 10)] == [0]  # the newest always goes
    assert newest_within([], 10) == []


def test_a_runaway_conversation_sends_its_newest_turns_with_a_warning(monkeypatch, capsys):
    monkeypatch.setattr(conversation, "MAX_CONVERSATION_CHARS", 50)
    cfg = parse_config("providers: [{name: gpt, kind: openai, model: m}]\n")
    talk = Conversation(cfg, "c1", [turn(i, 10) for i in range(4)], no_log=True)
    request: dict = {"messages": [{"role": "user", "content": "now"}]}
    talk.add_earlier(request)
    contents = [m["content"] for m in request["messages"]]
    assert len(contents) == 2 * 2 + 1 and contents[-1] == "now"
    assert len(talk.earlier) == 2  # the chat loop's list is bounded too
    assert "oldest 2 turns of conversation c1 are not sent" in capsys.readouterr().err


@pytest.mark.parametrize("size", [0, 1])
def test_a_conversation_within_the_bound_is_sent_whole(size, monkeypatch):
    cfg = parse_config("providers: [{name: gpt, kind: openai, model: m}]\n")
    talk = Conversation(cfg, "c1", [turn(i, size + 1) for i in range(3)], no_log=True)
    request: dict = {"prompt": "now"}
    talk.add_earlier(request)
    assert len(request["messages"]) == 6 and len(talk.earlier) == 3
