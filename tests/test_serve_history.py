"""``serve.log: true``: gateway requests land in the history database (read back as ``failover
logs`` reads it), written by a background thread; prompts and answers only with bodies on;
a database that cannot be written warns once and never fails a response."""

from __future__ import annotations

import logging
import threading
from typing import Any

import pytest
from conftest import SIM_KEY, provider
from test_serve_app import ANTHROPIC, OPENAI, anthropic_body, chat, gateway

from failover_cli.history import History
from failover_cli.sim import Behavior

__all__ = ["gateway"]  # a fixture

pytest.importorskip("uvicorn")


def entries(path) -> list[Any]:
    with History(path) as h:
        return list(reversed(h.entries(count=50)))


def test_answered_and_failed_requests_are_recorded_without_bodies(gateway, sim, tmp_path):
    db = tmp_path / "history.db"
    down = sim("openai", Behavior(statuses=[500] * 20))
    gw = gateway(provider("a", down), provider("b", sim("anthropic")),
                 serve={"log": True}, log={"path": str(db)},
                 models={"fast": ["a", "b"], "dead": ["a"]})  # fmt: skip
    assert gw.post(OPENAI, chat("secret prompt", model="fast")).status_code == 200
    assert gw.post(OPENAI, chat("again", model="dead")).status_code == 503
    r = gw.post(ANTHROPIC, anthropic_body("third"), headers={"anthropic-version": "2023-06-01"})
    assert r.status_code == 200
    gw.stop()  # the writer finishes its queue at shutdown
    answered, failed, third = entries(db)
    assert (answered.provider, answered.model, answered.chain) == ("b", "b-model", "fast")
    assert [a["provider"] for a in answered.attempts] == ["a", "a", "b"]
    assert answered.input_tokens and answered.output_tokens and answered.latency_ms > 0
    assert answered.prompt == "" and answered.answer == ""  # no --log-bodies
    assert failed.provider == "" and failed.chain == "dead" and failed.error
    assert failed.attempts and {a["outcome"] for a in failed.attempts} == {"failed"}
    assert third.provider == "b" and third.chain == "default"
    assert SIM_KEY.encode() not in db.read_bytes()
    assert b"secret prompt" not in db.read_bytes()


def test_bodies_are_recorded_with_log_bodies(gateway, sim, tmp_path):
    db = tmp_path / "history.db"
    gw = gateway(provider("a", sim("openai")), bodies=True,
                 serve={"log": True}, log={"path": str(db)})  # fmt: skip
    body = chat("what is failover?")
    body["messages"].insert(0, {"role": "system", "content": "Be brief"})
    with gw.client() as c, c.stream("POST", OPENAI, json={**body, "stream": True}) as r:
        assert r.status_code == 200 and "".join(r.iter_text())
    gw.stop()
    (entry,) = entries(db)
    assert entry.prompt == "what is failover?" and entry.system == "Be brief"
    assert entry.answer == "Hello from the failover simulator." and entry.provider == "a"


def test_writes_happen_off_the_event_loop(gateway, sim, tmp_path, monkeypatch):
    threads: list[str] = []
    original = History.record

    def spy(self: History, **kw: Any) -> int:
        threads.append(threading.current_thread().name)
        return original(self, **kw)

    monkeypatch.setattr(History, "record", spy)
    gw = gateway(provider("a", sim("openai")), serve={"log": True},
                 log={"path": str(tmp_path / "h.db")})  # fmt: skip
    for _ in range(3):
        assert gw.post(OPENAI, chat()).status_code == 200
    gw.stop()
    assert threads == ["failover-history"] * 3


def test_an_unwritable_history_warns_once_and_never_fails_a_response(
    gateway, sim, tmp_path, caplog
):
    blocked = tmp_path / "not-a-file"
    blocked.mkdir()  # a directory where the database should be
    gw = gateway(provider("a", sim("openai")), serve={"log": True}, log={"path": str(blocked)})
    with caplog.at_level(logging.WARNING, logger="failover.serve"):
        for _ in range(3):
            assert gw.post(OPENAI, chat()).status_code == 200
        gw.stop()
    warnings = [r.getMessage() for r in caplog.records if r.name == "failover.serve"]
    assert len(warnings) == 1 and warnings[0].startswith("history not recorded:")


def test_no_history_without_serve_log(gateway, sim, tmp_path):
    db = tmp_path / "history.db"
    gw = gateway(provider("a", sim("openai")), log={"path": str(db)})
    assert gw.post(OPENAI, chat()).status_code == 200
    gw.stop()
    assert not db.exists()
